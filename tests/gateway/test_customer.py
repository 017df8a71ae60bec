"""The customer 360 through the gateway, end to end: profile, persona, consents, DNA and timeline from
the journey service, responses and cases from the feedback service, each checked against what the
owning service answers directly; the timeline and the responses read page by page to the end; a
customer's cases read in one call."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.conftest import Keys, unique_name
from tests.eventually import eventually
from tests.gateway.answers import ask, norm, rest, rest_pages
from tests.scoring.factories import SCOPES, Stack, at, small_journey

CUSTOMER = "c012"  # met the ad and support, no shop; a detractor (NPS 5, then 2): two cases
PROFILE = {"segment": "shop", "home_city": "Köln", "age": 41}
CONSENTS = [
    {"purpose": "marketing", "channel": "email", "granted": True, "at": "2026-10-01T08:00:00Z"},
    {"purpose": "research", "granted": False, "at": "2026-10-02T08:00:00Z"},
]
CUSTOMER_360 = """
query($externalId: String!, $timelineAfter: String, $responsesAfter: String) {
  customer(externalId: $externalId) {
    id externalId profile consents { purpose channel granted at } channelPreferences existingCustomer personaRule
    version createdAt updatedAt
    persona { id key name }
    dna { visitorType visits interactions firstSeen lastSeen channels { channel interactions }
      outcomes { name count value }
      journeys { journey { id key name } memberBy stageReached { id key name position } interactions
        channels { channel interactions } touchpoints { touchpoint { id key } interactions firstAt lastAt }
        firstSeen lastSeen } }
    timeline(first: 3, after: $timelineAfter) {
      edges { cursor node { kind id eventId occurredAt touchpointKey channel journeyKey name value currency
        properties } }
      pageInfo { hasNextPage endCursor } }
    responses(first: 2, after: $responsesAfter) {
      edges { cursor node { id responseId surveyId surveyVersion customerExternalId journeyKey stageKey touchpointKey
        channel submittedAt answers comment language metadata nps npsCategory csat ces sentiment themes createdAt } }
      pageInfo { hasNextPage endCursor } }
    cases { id responseId ruleId ruleName reason status assignee dueAt surveyId customerExternalId touchpointKey
      version createdAt updatedAt }
  }
}
"""


async def customer_of(stack: Stack) -> None:
    """small_journey, a persona its profile matches, the profile and consents, two more events and a
    third response."""
    await small_journey(stack)
    persona = {"key": "shoppers", "name": "Shoppers", "rules": [
        {"name": "shop segment", "when": {"attribute": "segment", "op": "eq", "value": "shop"}}]}  # fmt: skip
    await stack._ok(stack.journey, "POST", "/v1/personas", 201, json=persona)
    body = {
        "profile": PROFILE,
        "consents": CONSENTS,
        "channel_preferences": ["email", "web"],
        "existing_customer": True,
    }
    await stack._ok(stack.journey, "PUT", f"/v1/customers/{CUSTOMER}", 200, json=body)
    await stack.interactions([{"event_id": f"{CUSTOMER}-ad-again", "customer": CUSTOMER, "touchpoint": "ad",
                               "occurred_at": at(40), "properties": {"campaign": "autumn"}}])  # fmt: skip
    await stack.outcomes([{"event_id": f"{CUSTOMER}-refund", "customer": CUSTOMER, "name": "refund", "value": "-20.00",
                           "currency": "EUR", "touchpoint": "support", "occurred_at": at(41)}])  # fmt: skip
    survey = (await stack._ok(stack.feedback, "GET", "/v1/surveys", 200))["items"][0]
    await stack.responses([{"survey_id": survey["id"], "customer_external_id": CUSTOMER, "touchpoint_key": "support",
                            "submitted_at": at(42), "answers": {"recommend": 2}}])  # fmt: skip


async def cases_of(stack: Stack, responses: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The cases of these responses, each read by its response's id (a case has it), once there are n."""

    async def opened() -> list[dict[str, Any]] | None:
        found = [await stack.feedback.get(f"/v1/cases/{r['id']}", headers=stack.headers) for r in responses]
        cases = [c.json() for c in found if c.status_code == 200]
        return cases if len(cases) == n else None

    return await eventually(opened, within=20)


class TestCustomer360:
    async def test_every_field_is_what_the_owning_service_answers(
        self, processes: dict[str, str], stack: Stack
    ) -> None:
        await customer_of(stack)
        path = f"/v1/customers/{CUSTOMER}"
        listed = await rest_pages(stack.feedback, stack.headers, "/v1/responses", 1, customer=CUSTOMER)
        responses = [r for page in listed for r in page["items"]]
        assert len(responses) == 3
        cases = await cases_of(stack, responses, 2)

        # the timeline and the responses, page by page to the end, with the rest of the 360 on each page
        pages: list[dict[str, Any]] = []
        variables: dict[str, Any] = {"externalId": CUSTOMER}
        while True:
            got = (await ask(processes["gateway"], stack.headers, CUSTOMER_360, **variables))["customer"]
            pages.append(got)
            timeline, answered = got["timeline"]["pageInfo"], got["responses"]["pageInfo"]
            if not (timeline["hasNextPage"] or answered["hasNextPage"]):
                break
            variables["timelineAfter"] = timeline["endCursor"] if timeline["hasNextPage"] else None
            variables["responsesAfter"] = answered["endCursor"] if answered["hasNextPage"] else None
        assert len(pages) == 2  # the timeline's and the responses' second pages came together
        first = pages[0]

        # profile, consents, persona
        customer = await rest(stack.journey, stack.headers, path)
        assert norm({k: first[k] for k in first if k not in ("persona", "dna", "timeline", "responses", "cases")}) == {
            k: v for k, v in norm(customer).items() if k in first
        }  # fmt: skip
        assert first["profile"] == PROFILE
        assert len(first["consents"]) == 2
        persona = await rest(stack.journey, stack.headers, f"/v1/personas/{customer['persona_id']}")
        assert first["persona"] == {"id": persona["id"], "key": "shoppers", "name": persona["name"]}
        assert first["personaRule"] == "shop segment"

        # DNA, the journeys and touchpoints it names resolved by the journey service's ids
        dna = await rest(stack.journey, stack.headers, f"{path}/dna")
        journeys = [
            {**{k: v for k, v in j.items() if k not in ("journey_id", "journey", "name")},
             "journey": {"id": j["journey_id"], "key": j["journey"], "name": j["name"]},
             "touchpoints": [{"touchpoint": {"id": t["touchpoint_id"], "key": t["touchpoint"]},
                              **{k: v for k, v in t.items() if k not in ("touchpoint_id", "touchpoint")}}
                             for t in j["touchpoints"]]}
            for j in dna["journeys"]
        ]  # fmt: skip
        expected = {
            k: v for k, v in dna.items() if k not in ("customer_id", "external_id", "persona_id", "persona_key")
        }
        assert norm(first["dna"]) == norm({**expected, "journeys": journeys})
        assert first["dna"]["interactions"] == 3
        assert [(o["name"], o["count"], Decimal(o["value"])) for o in first["dna"]["outcomes"]] == [
            ("refund", 1, Decimal("-20.00"))
        ]

        # the timeline: 2 + 1 interactions and an outcome, newest first, three a page
        timeline_pages = await rest_pages(stack.journey, stack.headers, f"{path}/timeline", 3)
        got_timeline = [p["timeline"] for p in pages]
        assert [len(p["edges"]) for p in got_timeline] == [len(p["items"]) for p in timeline_pages] == [3, 1]
        for got_page, rest_page in zip(got_timeline, timeline_pages, strict=True):
            items = [{**{k: v for k, v in t.items() if k not in ("touchpoint", "journey")},
                      "touchpoint_key": t["touchpoint"], "journey_key": t["journey"]}
                     for t in rest_page["items"]]  # fmt: skip
            assert norm([e["node"] for e in got_page["edges"]]) == norm(items)
            assert [e["cursor"] for e in got_page["edges"]][-1] == rest_page["next_cursor"]
            assert got_page["pageInfo"] == {"hasNextPage": rest_page["next_cursor"] is not None,
                                            "endCursor": rest_page["next_cursor"]}  # fmt: skip
        assert got_timeline[0]["edges"][0]["node"]["kind"] == "outcome"

        # the responses, two a page, and the cases its NPS of 5 and 2 opened
        got_responses = [e["node"] for p in pages for e in p["responses"]["edges"]]
        assert norm(got_responses) == [{k: v for k, v in norm(r).items() if k in got_responses[0]} for r in responses]
        assert norm(first["cases"]) == [{k: v for k, v in norm(c).items() if k in first["cases"][0]} for c in cases]
        assert first["cases"][0]["customerExternalId"] == CUSTOMER

    async def test_a_customers_cases_cost_one_call(self, processes: dict[str, str], stack: Stack) -> None:
        """A customer with 3 responses, 2 of them detractors, beside another customer's case: the 360
        reads its cases with one call of an in-process gateway over the package's services."""
        await stack._ok(stack.journey, "PUT", "/v1/customers/c-360", 201, json={"profile": {}})
        survey = await stack.survey()
        answers = [("c-360", 1), ("c-other", 0), ("c-360", 9), ("c-360", 4)]
        await stack.responses([{"survey_id": survey["id"], "customer_external_id": c, "submitted_at": at(i),
                                "answers": {"recommend": nps}} for i, (c, nps) in enumerate(answers)])  # fmt: skip
        listed = await rest(stack.feedback, stack.headers, "/v1/responses", customer="c-360")
        assert len(listed["items"]) == 3
        cases = await cases_of(stack, listed["items"], 2)
        other = await rest(stack.feedback, stack.headers, "/v1/responses", customer="c-other")
        await cases_of(stack, other["items"], 1)  # open too: the filter has a case to leave out

        app = create_app(GatewaySettings(journey_url=processes["journey"], feedback_url=processes["feedback"],
                                         scoring_url=processes["scoring"]))  # fmt: skip
        fields = "customerExternalId id responseId status reason version createdAt"
        calls, answered = [], []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            for selection in ("externalId", f"externalId cases {{ {fields} }}"):
                query = f'{{ customer(externalId: "c-360") {{ {selection} }} }}'
                before = app.state.services.calls
                body = (await client.post("/graphql", headers=stack.headers, json={"query": query})).json()
                assert "errors" not in body, body
                calls.append(app.state.services.calls - before)
                answered.append(body["data"]["customer"])
        await app.state.services.close()
        assert calls == [1, 2]  # the customer; the customer and its cases
        got = answered[1]["cases"]
        assert norm(got) == [{k: v for k, v in norm(c).items() if k in got[0]} for c in cases]
        assert [c["id"] for c in got] == [r["id"] for r in listed["items"] if r["nps"] <= 6]

    async def test_another_workspace_and_an_unknown_customer_are_null(
        self, processes: dict[str, str], stack: Stack, keys: Keys
    ) -> None:
        special = "crm 42 ä?x#1%&y=2"  # characters a URL gives a meaning to
        await stack._ok(stack.journey, "PUT", f"/v1/customers/{quote(special, safe='')}", 201, json={"profile": {}})
        query = "query($externalId: String!) { customer(externalId: $externalId) { externalId dna { interactions } } }"
        mine = await ask(processes["gateway"], stack.headers, query, externalId=special)
        assert mine == {"customer": {"externalId": special, "dna": {"interactions": 0}}}
        other = keys.headers(unique_name("gw-other"), SCOPES)
        assert await ask(processes["gateway"], other, query, externalId=special) == {"customer": None}
        assert await ask(processes["gateway"], stack.headers, query, externalId="nobody") == {"customer": None}
