"""The catalogue, surveys, cases, metrics and comments through the gateway, end to end: the services and
the gateway as processes of their own, a workspace built through the services' REST APIs, every field
read with a real GraphQL client and checked against what the owning service answers directly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from gql.transport.exceptions import TransportQueryError

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.conftest import Keys, unique_name
from tests.eventually import eventually
from tests.gateway.answers import agreed, ask, norm, rest, rest_pages, same_fields, set_aside
from tests.scoring.factories import CUSTOMERS, SCOPES, Stack, at, small_journey

PERSONAS = [
    {"key": "shoppers", "name": "Shoppers", "needs": ["a bike today"], "priority": 10,
     "rules": [{"name": "shop segment", "when": {"attribute": "segment", "op": "eq", "value": "shop"}}]},
    {"key": "callers", "name": "Callers", "role": "Tenant, 34", "pains": ["waiting on the phone"]},
]  # fmt: skip
COMMENTS = ["The support was slow and nobody answered my call.", "Great help, friendly and quick!", "It was okay."]
EXTRA = 20  # NPS answers about `support`, in both journeys it sits in, with comments
# Detractors open a case each (the default NPS <= 6 rule): small_journey's customers without the shop
# answer 3 + i % 5, the extra answers i % 11.
DETRACTORS = sum(1 for i in range(CUSTOMERS) if i % 3 == 0 and 3 + i % 5 <= 6) + sum(
    1 for i in range(EXTRA) if i % 11 <= 6
)


class Built:
    def __init__(self, stack: Stack, touchpoints: dict[str, dict[str, Any]], survey: dict[str, Any]) -> None:
        self.stack, self.touchpoints, self.survey = stack, touchpoints, survey

    async def rest(self, client: httpx.AsyncClient, url: str, **params: Any) -> Any:
        return await rest(client, self.stack.headers, url, **params)

    async def pages(self, client: httpx.AsyncClient, url: str, limit: int, **params: Any) -> list[list[Any]]:
        return [p["items"] for p in await rest_pages(client, self.stack.headers, url, limit, **params)]


@pytest.fixture(scope="module")
async def built(processes: dict[str, str], keys: Keys) -> AsyncIterator[Built]:
    """small_journey, two personas, a second journey holding `support`, NPS answers with comments about
    `support` in both journeys; once the cases are open and the comments analysed."""
    async with (
        httpx.AsyncClient(base_url=processes["journey"], timeout=30) as journey,
        httpx.AsyncClient(base_url=processes["feedback"], timeout=30) as feedback,
        httpx.AsyncClient(base_url=processes["scoring"], timeout=30) as scoring,
    ):
        stack = Stack(journey, feedback, scoring, keys, unique_name("gw-catalog"))
        first = await small_journey(stack)
        for persona in PERSONAS:
            await stack._ok(journey, "POST", "/v1/personas", 201, json=persona)
        fix, _ = await stack.build_journey("fix-a-bike", [])
        stages = (await stack._ok(journey, "GET", f"/v1/journeys/{fix['id']}/stages", 200))["items"]
        use = next(s for s in stages if s["key"] == "use")
        step = {"stage_id": use["id"], "touchpoint_id": first["touchpoints"]["support"]["id"]}
        await stack._ok(journey, "POST", f"/v1/journeys/{fix['id']}/steps", 201, json=step)
        survey = (await stack._ok(feedback, "GET", "/v1/surveys", 200))["items"][0]
        # a purchase with a value, so that journeys can be weighed by value
        await stack.outcomes([{"event_id": "c001-buy-again", "customer": "c001", "name": "purchase", "value": "499.00",
                               "currency": "EUR", "touchpoint": "shop", "occurred_at": at(200)}])  # fmt: skip
        await stack.responses([
            {"survey_id": survey["id"], "customer_external_id": f"c{i:03d}", "touchpoint_key": "support",
             "journey_key": "fix-a-bike" if i % 2 else "buy-a-bike", "submitted_at": at(120 + i),
             "answers": {"recommend": i % 11}, "comment": COMMENTS[i % 3], "language": "en"}
            for i in range(EXTRA)
        ])  # fmt: skip
        it = Built(stack, first["touchpoints"], survey)

        async def settled() -> bool:
            cases = sum(len(p) for p in await it.pages(feedback, "/v1/cases", 500))
            return cases == DETRACTORS and (await it.rest(feedback, "/v1/comments/summary"))["pending"] == 0

        await eventually(settled, within=30, every=0.3)
        yield it


TOUCHPOINTS = """
query { touchpoints(first: 100) { edges { cursor node {
  id key name channel department yearlyCost currency description version createdAt updatedAt
  journeys { id key }
  priority { value low high weightBy
    journeys { journey { id } relevance relevanceLow relevanceHigh weight snapshotId } }
  npsByJourney { journeyKey journey { id key } nps { value low high n method asOf } } } }
  pageInfo { hasNextPage endCursor } } }
"""


def _rest_metric(v: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    return {"value": v["value"], "low": v["interval_low"], "high": v["interval_high"], "n": v["n"],
            "method": result["method"], "asOf": result["as_of"]}  # fmt: skip


class TestCatalog:
    async def test_personas_and_touchpoints_are_what_the_services_answer(
        self, processes: dict[str, str], built: Built
    ) -> None:
        stack, gw = built.stack, processes["gateway"]
        fields = "id key name role background needs goals pains priority rules version createdAt updatedAt"
        personas = await ask(gw, stack.headers, f"{{ personas(first: 500) {{ edges {{ node {{ {fields} }} }} }} }}")
        rest = (await built.rest(stack.journey, "/v1/personas", limit=500))["items"]
        assert len(personas["personas"]["edges"]) == len(rest) == 2
        for edge, expected in zip(personas["personas"]["edges"], rest, strict=True):
            same_fields(edge["node"], expected)

        async def from_services() -> Any:
            answer = []
            for t in (await built.rest(stack.journey, "/v1/touchpoints", limit=100))["items"]:
                steps = await built.rest(stack.journey, "/v1/steps", touchpoint_id=t["id"], limit=500)
                journey_ids = list(dict.fromkeys(s["journey_id"] for s in steps["items"]))
                journeys = [await built.rest(stack.journey, f"/v1/journeys/{j}") for j in journey_ids]
                priority = await built.rest(stack.scoring, f"/v1/touchpoints/{t['id']}/priority")
                nps = await built.rest(stack.feedback, "/v1/metrics/nps", touchpoint=t["key"], group_by="journey")
                by_journey = []
                for g in nps["groups"]:
                    found = (await built.rest(stack.journey, "/v1/journeys", key=g["group"]["journey"]))["items"]
                    journey = {"id": found[0]["id"], "key": found[0]["key"]} if found else None
                    by_journey.append({"journeyKey": g["group"]["journey"], "nps": _rest_metric(g, nps),
                                       "journey": journey})  # fmt: skip
                by_journey.sort(key=lambda g: g["journeyKey"] or "")
                answer.append({**t,
                               "journeys": [{"id": j["id"], "key": j["key"]} for j in journeys],
                               "priority": {"value": priority["priority"], "low": priority["low"],
                                            "high": priority["high"], "weight_by": priority["weight_by"],
                                            "journeys": [{**{k: v for k, v in r.items() if k != "journey_id"},
                                                          "journey": {"id": r["journey_id"]}}
                                                         for r in priority["journeys"]]},
                               "nps_by_journey": by_journey})  # fmt: skip
            return norm(answer)

        async def from_gateway() -> Any:
            listed = (await ask(gw, stack.headers, TOUCHPOINTS))["touchpoints"]
            assert listed["pageInfo"] == {"hasNextPage": False, "endCursor": listed["edges"][-1]["cursor"]}
            nodes = [e["node"] for e in listed["edges"]]
            for node in nodes:
                node["npsByJourney"].sort(key=lambda g: g["journeyKey"] or "")
            return norm(nodes)

        touchpoints = await agreed(from_services, from_gateway)
        by_key = {t["key"]: t for t in touchpoints}
        assert sorted(by_key) == ["ad", "shop", "support"]
        support = by_key["support"]
        assert [j["key"] for j in support["journeys"]] == ["buy-a-bike", "fix-a-bike"]
        assert sorted(g["journeyKey"] for g in support["npsByJourney"]) == ["buy-a-bike", "fix-a-bike"]
        assert sum(g["nps"]["n"] for g in support["npsByJourney"]) == EXTRA
        assert by_key["shop"]["priority"]["value"] is not None
        assert by_key["shop"]["priority"]["journeys"]
        assert by_key["shop"]["yearlyCost"] == "20000.00"

        # one touchpoint by key and by id, weighted by value
        one = 'query($key: String, $id: ID) { touchpoint(key: $key, id: $id) { id key priority(weightBy: "value") '
        one += "{ value low high weightBy journeys { weight } } } }"
        by_id = {"id": support["id"]}
        got_key, got_id = [(await ask(gw, stack.headers, one, **v))["touchpoint"] for v in ({"key": "support"}, by_id)]
        valued = await built.rest(stack.scoring, f"/v1/touchpoints/{support['id']}/priority", weight_by="value")
        assert got_key == got_id
        assert got_key["priority"] == {"value": valued["priority"], "low": valued["low"], "high": valued["high"],
                                       "weightBy": "value", "journeys": [{"weight": j["weight"]}
                                                                         for j in valued["journeys"]]}  # fmt: skip
        assert sum(j["weight"] for j in got_key["priority"]["journeys"]) == pytest.approx(1.0)

    async def test_surveys_and_cases_are_what_the_service_answers(
        self, processes: dict[str, str], built: Built
    ) -> None:
        stack, gw = built.stack, processes["gateway"]
        fields = "id key name kind status target { type journeyKey stageKey touchpointKey } defaultLanguage "
        fields += "version revision questions { key type required text options { key text } } createdAt updatedAt"
        got = await ask(gw, stack.headers, f"query($id: ID!) {{ survey(id: $id) {{ {fields} }} "
                        f"surveys(first: 5, status: \"active\") {{ edges {{ node {{ {fields} }} }} }} }}",
                        id=built.survey["id"])  # fmt: skip
        rest = await built.rest(stack.feedback, f"/v1/surveys/{built.survey['id']}")
        assert len(got["survey"]["questions"]) == 3
        same_fields(got["survey"], rest)
        listed = (await built.rest(stack.feedback, "/v1/surveys", status="active", limit=5))["items"]
        assert [e["node"] for e in got["surveys"]["edges"]] == [got["survey"]]
        assert len(listed) == 1

        # every case, ten a page, following `after` to the end
        case_fields = "id responseId ruleId ruleName reason status assignee dueAt surveyId customerExternalId "
        case_fields += "touchpointKey version createdAt updatedAt"
        query = (
            f"query($after: String) {{ cases(first: 10, after: $after) {{ edges {{ cursor node {{ {case_fields} }} }}"
        )
        query += " pageInfo { hasNextPage endCursor } } }"
        pages, after = [], None
        while True:
            page = (await ask(gw, stack.headers, query, after=after))["cases"]
            pages.append([e["node"] for e in page["edges"]])
            assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        rest_pages = await built.pages(stack.feedback, "/v1/cases", 10)
        assert [len(p) for p in pages] == [len(p) for p in rest_pages] == [10, 10, 10, DETRACTORS - 30]
        for page, rest_page in zip(pages, rest_pages, strict=True):
            for case, expected in zip(page, rest_page, strict=True):
                same_fields(case, expected)
        support = await ask(gw, stack.headers, '{ cases(first: 100, touchpoint: "support") { edges { node { id } } } }')
        rest_support = (await built.rest(stack.feedback, "/v1/cases", touchpoint="support", limit=100))["items"]
        assert [e["node"]["id"] for e in support["cases"]["edges"]] == [c["id"] for c in rest_support]
        assert len(rest_support) == sum(1 for i in range(EXTRA) if i % 11 <= 6)

    @pytest.mark.parametrize(
        ("metric", "arguments", "params"),
        [
            ("nps", {}, {}),
            ("nps", {"groupBy": ["journey", "touchpoint"]}, {"group_by": ["journey", "touchpoint"]}),
            ("csat", {"journey": ["buy-a-bike"], "groupBy": ["touchpoint"]},
             {"journey": ["buy-a-bike"], "group_by": ["touchpoint"]}),
            ("ces", {"since": "2026-11-02T09:30:00Z", "until": "2026-11-02T10:00:00Z", "groupBy": ["touchpoint"]},
             {"since": "2026-11-02T09:30:00Z", "until": "2026-11-02T10:00:00Z", "group_by": ["touchpoint"]}),
            ("nps", {"touchpoint": ["support"], "since": "2026-11-02T11:10:00Z", "compareSince": "2026-11-02T11:00:00Z",
                     "compareUntil": "2026-11-02T11:10:00Z"},
             {"touchpoint": ["support"], "since": "2026-11-02T11:10:00Z", "compare_since": "2026-11-02T11:00:00Z",
              "compare_until": "2026-11-02T11:10:00Z"}),
        ],
    )  # fmt: skip
    async def test_metrics_by_slice_are_what_the_service_answers(
        self, processes: dict[str, str], built: Built, metric: str, arguments: dict[str, Any], params: dict[str, Any]
    ) -> None:
        stack = built.stack
        metric_fields = "value low high n method asOf"
        slice_fields = f"group {{ by value }} metric {{ {metric_fields} }} adjusted promoters passives detractors "
        slice_fields += (
            f"satisfied comparison {{ previous {{ {metric_fields} }} difference low high pValue statistic method }}"
        )
        declared = {"groupBy": "[String!]", "journey": "[String!]", "touchpoint": "[String!]", "since": "DateTime",
                    "until": "DateTime", "compareSince": "DateTime", "compareUntil": "DateTime"}  # fmt: skip
        variables = ", ".join(f"${k}: {declared[k]}" for k in arguments)
        passed = ", ".join(f"{k}: ${k}" for k in arguments)
        query = f"query{f'({variables})' if arguments else ''} {{ {metric}{f'({passed})' if arguments else ''} {{ "
        query += "metric method level source rollupLevel since until compareSince compareUntil asOf "
        query += f"overall {{ {slice_fields} }} groups {{ {slice_fields} }} }} }}"

        def rest_slice(v: dict[str, Any], r: dict[str, Any]) -> dict[str, Any]:
            c = v.get("comparison")
            return {"group": [{"by": k, "value": x} for k, x in v.get("group", {}).items()],
                    "metric": _rest_metric(v, r), **{k: v.get(k) for k in ("adjusted", "promoters", "passives",
                                                                          "detractors", "satisfied")},
                    "comparison": c and {"previous": _rest_metric(c["previous"], r), "difference": c["difference"],
                                         "low": c["interval_low"], "high": c["interval_high"], "pValue": c["p_value"],
                                         "statistic": c["statistic"], "method": c["method"]}}  # fmt: skip

        times: list[set[datetime]] = []  # each read's asOf values

        async def from_service() -> Any:
            r = await built.rest(stack.feedback, f"/v1/metrics/{metric}", **params)
            compared = r["compared_window"] or {}
            times.append(set())
            answer = norm({"metric": r["metric"], "method": r["method"], "level": r["level"], "source": r["source"],
                         "rollupLevel": r["rollup_level"], "since": r["window"]["since"],
                         "until": r["window"]["until"], "compareSince": compared.get("since"),
                         "compareUntil": compared.get("until"), "asOf": r["as_of"],
                         "overall": rest_slice(r["overall"], r),
                         "groups": [rest_slice(g, r) for g in r["groups"]]})  # fmt: skip
            return set_aside(answer, times[-1])

        async def from_gateway() -> Any:
            times.append(set())
            answer = await ask(processes["gateway"], stack.headers, query, **arguments)
            return set_aside(norm(answer[metric]), times[-1])

        got = await agreed(from_service, from_gateway)
        before, read, after = times[-3:]  # one asOf per answer, its slices' too, in the order of the reads
        assert len(before) == len(read) == len(after) == 1
        assert min(before) <= min(read) <= min(after)
        assert got["overall"]["metric"]["n"] > 0
        assert got["overall"]["metric"]["method"].startswith(metric.upper())
        assert len(got["groups"]) > (1 if arguments.get("groupBy") else -1)
        assert (got["overall"]["comparison"] is not None) == ("compareSince" in arguments)

    async def test_comments_summary_is_what_the_service_answers(self, processes: dict[str, str], built: Built) -> None:
        stack = built.stack
        query = "query($groupBy: String!) { comments(groupBy: $groupBy) { groupBy pending asOf groups { group comments "
        query += "meanSentiment positive neutral negative themes { theme n meanSentiment } } } }"
        for group_by in ("touchpoint", "journey"):
            got = (await ask(processes["gateway"], stack.headers, query, groupBy=group_by))["comments"]
            rest = await built.rest(stack.feedback, "/v1/comments/summary", group_by=group_by)
            assert norm(got["groups"]) == norm(rest["groups"])
            assert got["pending"] == rest["pending"] == 0
            assert sum(g["comments"] for g in got["groups"]) == EXTRA
            assert got["groupBy"] == group_by
            assert datetime.fromisoformat(got["asOf"]) <= datetime.fromisoformat(rest["as_of"])


class TestIsolationAndLimits:
    async def test_another_workspace_reads_none_of_the_rows(
        self, processes: dict[str, str], built: Built, keys: Keys
    ) -> None:
        other = keys.headers(unique_name("gw-other"), SCOPES)
        support = built.touchpoints["support"]
        query = """query($survey: ID!, $id: ID!) {
          personas { edges { node { id } } } touchpoints { edges { node { id } } }
          byKey: touchpoint(key: "support") { id } byId: touchpoint(id: $id) { id }
          surveys { edges { node { id } } } survey(id: $survey) { id } cases { edges { node { id } } }
          nps { overall { metric { n } } groups { metric { n } } } comments(groupBy: "journey") { groups { comments } }
        }"""
        mine = await ask(processes["gateway"], built.stack.headers, query, survey=built.survey["id"], id=support["id"])
        theirs = await ask(processes["gateway"], other, query, survey=built.survey["id"], id=support["id"])
        assert mine["survey"] is not None
        assert mine["nps"]["overall"]["metric"]["n"] > 0
        assert mine["cases"]["edges"]
        assert mine["byKey"] == mine["byId"] == {"id": support["id"]}
        assert theirs == {
            "personas": {"edges": []}, "touchpoints": {"edges": []}, "byKey": None, "byId": None,
            "surveys": {"edges": []}, "survey": None, "cases": {"edges": []},
            "nps": {"overall": {"metric": {"n": 0}}, "groups": []}, "comments": {"groups": []},
        }  # fmt: skip

    @pytest.mark.parametrize(
        ("query", "message"),
        [
            ("{ touchpoints(first: 101) { edges { cursor } } }", "`first` is 1 to 100."),
            ("{ personas(first: 501) { edges { cursor } } }", "`first` is 1 to 500."),
            ("{ cases(first: 0) { edges { cursor } } }", "`first` is 1 to 500."),
            ('{ customer(externalId: "c000") { timeline(first: 501) { edges { cursor } } } }', "`first` is 1 to 500."),
            ('{ survey(id: "not-an-id") { id } }', "'not-an-id' is not a survey id (a UUID)."),
        ],
    )
    async def test_a_wrong_argument_is_a_readable_error(
        self, processes: dict[str, str], built: Built, query: str, message: str
    ) -> None:
        with pytest.raises(TransportQueryError) as raised:
            await ask(processes["gateway"], built.stack.headers, query)
        assert raised.value.errors is not None
        assert [e["message"] for e in raised.value.errors] == [message]


class TestPlanByLevel:
    async def test_a_page_of_touchpoints_costs_one_call_per_level(
        self, processes: dict[str, str], built: Built, stack: Stack
    ) -> None:
        """The list, the steps, their journeys, the NPS, the priorities: five calls for 3 touchpoints or 40."""
        await stack.build_journey("many", [(f"t{i}", "buy", None, False) for i in range(40)])
        app = create_app(GatewaySettings(journey_url=processes["journey"], feedback_url=processes["feedback"],
                                         scoring_url=processes["scoring"]))  # fmt: skip
        query = "{ touchpoints(first: 100) { edges { node { key journeys { key } npsByJourney { journeyKey nps { n } } "
        query += "priority { value } "
        query += "} } } }"
        calls, sizes = [], []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            for headers in (built.stack.headers, stack.headers):
                before = app.state.services.calls
                body = (await client.post("/graphql", headers=headers, json={"query": query})).json()
                assert "errors" not in body, body
                calls.append(app.state.services.calls - before)
                sizes.append(len(body["data"]["touchpoints"]["edges"]))
        await app.state.services.close()
        assert sizes == [3, 40]
        assert calls == [5, 5]


class TestPartialAnswers:
    async def test_a_failing_service_nulls_only_the_fields_it_answers(self, bearer: dict[str, str]) -> None:
        """The scoring and feedback services failing (here an httpx transport that answers for the
        services): the touchpoints and the customer are still served, their priorities, NPS, responses
        and cases are null, each with the failing service's error at its path."""
        at_ = "2026-12-01T10:00:00Z"
        touchpoint = {"id": "01a23b14-99b6-77be-b5eb-4e9e6642c181", "key": "shop", "name": "Shop", "channel": "web",
                      "department": None, "yearly_cost": None, "currency": "EUR", "description": None, "version": 1,
                      "created_at": at_, "updated_at": at_}  # fmt: skip
        customer = {"id": "01a23b14-99b6-77be-b5eb-4e9e6642c182", "external_id": "c1", "profile": {}, "consents": [],
                    "channel_preferences": [], "existing_customer": False, "persona_id": None, "persona_rule": None,
                    "version": 1, "created_at": at_, "updated_at": at_}  # fmt: skip

        async def services(request: httpx.Request) -> httpx.Response:
            if request.url.port != 8001:  # the feedback and scoring services (settings' default URLs)
                return httpx.Response(503, json={"title": "Service Unavailable", "detail": "down for maintenance"})
            path = request.url.path
            if path == "/v1/touchpoints":
                return httpx.Response(200, json={"items": [touchpoint], "next_cursor": None})
            if path == "/v1/customers/c1":
                return httpx.Response(200, json=customer)
            return httpx.Response(200, json={"items": [], "next_cursor": None})

        app = create_app(GatewaySettings(), transport=httpx.MockTransport(services))
        query = """{ touchpoints { edges { node { key journeys { key } priority { value } npsByJourney { journeyKey } }
          } } customer(externalId: "c1") { externalId responses { edges { cursor } } cases { id } } }"""
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            body = (await client.post("/graphql", headers=bearer, json={"query": query})).json()
        await app.state.services.close()
        node: dict[str, Any] = {"key": "shop", "journeys": [], "priority": None, "npsByJourney": None}
        assert body["data"] == {"touchpoints": {"edges": [{"node": node}]},
                                "customer": {"externalId": "c1", "responses": None, "cases": None}}  # fmt: skip
        errors = {tuple(e["path"]): e["extensions"]["service"] for e in body["errors"]}
        assert errors == {
            ("touchpoints", "edges", 0, "node", "priority"): "scoring",
            ("touchpoints", "edges", 0, "node", "npsByJourney"): "feedback",
            ("customer", "responses"): "feedback",
            ("customer", "cases"): "feedback",
        }
