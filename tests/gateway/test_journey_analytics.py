"""The journey's analytics through the gateway, end to end: persona, owner, team and the target journey
that improves it; funnel, top paths and NPS trend; portfolio, moments of truth and attribution; each
step's comment sentiment and themes. The services run as processes of their own, the journey is built
and fed through their REST APIs and read back with a real GraphQL client (gql); every value is checked
against what the services answer directly, field by field."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import httpx
from gql import Client, GraphQLRequest
from gql.transport.httpx import HTTPXAsyncTransport

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.eventually import eventually
from tests.scoring.factories import CUSTOMERS, Stack, small_journey

STEP = "touchpoint { key } sentiment { comments meanSentiment positive neutral negative asOf } "
STEP += "themes { theme n meanSentiment }"
TREND = "bucket method source asOf buckets { start value low high n adjusted promoters passives detractors }"
ATTRIBUTION = "model conversions paths conversionProbability method asOf "
ATTRIBUTION += "credits { touchpointId credit low high removalEffect }"
QUERY = f"""
query Analytics($key: String!) {{
  journey(key: $key) {{
    id owner team state
    persona {{ id key name role background needs goals pains priority }}
    improves {{ id }}
    improvedBy {{ id key state owner improves {{ id key }} improvedBy {{ id }} }}
    funnel(windowHours: 48) {{ windowHours windowFrom breakdown since until source asOf
      groups {{ group stages {{ stage {{ id key name position }} customers conversionFromPrevious
        conversionOverall dropOff medianSecondsFromPrevious }} }} }}
    topPaths(level: TOUCHPOINTS, top: 3) {{ level collapse customers otherCustomers source asOf
      paths {{ nodes customers share }} nodes {{ id key depth customers }} links {{ source target customers }} }}
    week: npsTrend(bucket: WEEK) {{ {TREND} }}
    month: npsTrend(bucket: MONTH) {{ {TREND} }}
    portfolio {{ relevanceThreshold reachThreshold quadrants {{ quadrant touchpointIds }} budgetBurners asOf }}
    momentsOfTruth {{ coverage confirmed unconfirmed undiscovered asOf }}
    attribution {{ {ATTRIBUTION} }}
    markov: attribution(model: MARKOV) {{ {ATTRIBUTION} }}
    stages {{ steps {{ {STEP} }} }}
  }}
}}
"""
COMMENTS = [  # (customer, touchpoint, submitted at, likelihood to recommend, comment)
    ("c001", "shop", "2026-11-10T10:00:00Z", 10, "Friendly staff and a fair price, great service."),
    ("c002", "shop", "2026-11-11T10:00:00Z", 9, "Helpful advisor, delivery was quick."),
    ("c004", "support", "2026-11-12T10:00:00Z", 2, "Terrible, I had to wait an hour on hold."),
    ("c008", "support", "2026-12-03T10:00:00Z", 4, "Slow answer and a rude agent."),
    ("c005", "shop", "2026-12-04T10:00:00Z", 6, "Too expensive for what it is."),
]


def _t(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


async def _gql(url: str, headers: dict[str, str], key: str) -> dict[str, Any]:
    transport = HTTPXAsyncTransport(url=f"{url}/graphql", headers=headers, timeout=30)
    async with Client(transport=transport) as session:
        result: dict[str, Any] = await session.execute(GraphQLRequest(QUERY, variable_values={"key": key}))
        return result["journey"]  # type: ignore[no-any-return]


async def _journey(stack: Stack, method: str, url: str, status: int, **kw: Any) -> Any:
    response = await stack.journey.request(method, url, headers=stack.headers, **kw)
    assert response.status_code == status, response.text
    return response.json()


async def _build(stack: Stack) -> dict[str, Any]:
    """small_journey, with a persona, an owner, a team, a target journey improving it, and comments
    (with likelihood to recommend) in other weeks and months; once the services have applied them."""
    persona = await _journey(stack, "POST", "/v1/personas", 201, json={
        "key": "commuter", "name": "Commuter", "role": "Office worker, 35", "background": "Rides to work daily",
        "needs": ["a reliable bike"], "goals": ["ride in under 30 minutes"], "pains": ["flat tyres"], "priority": 5,
    })  # fmt: skip
    built = await small_journey(stack)
    journey_id = built["journey"]["id"]
    await _journey(stack, "PATCH", f"/v1/journeys/{journey_id}", 200,
                    json={"persona_id": persona["id"], "owner": "Lena Vogel", "team": "Bikes"})  # fmt: skip
    target = await _journey(stack, "POST", "/v1/journeys", 201, json={
        "key": "buy-a-bike-target", "name": "Buy a bike, redesigned", "state": "target", "owner": "Jan Roth",
        "improves_journey_id": journey_id,
    })  # fmt: skip
    survey = await stack.survey("comments")
    await stack.responses([
        {"survey_id": survey["id"], "customer_external_id": c, "journey_key": "buy-a-bike", "touchpoint_key": tp,
         "submitted_at": at, "answers": {"recommend": ltr}, "comment": text, "language": "en"}
        for c, tp, at, ltr, text in COMMENTS
    ])  # fmt: skip

    async def analysed() -> bool:
        summary = await stack.feedback.get("/v1/comments/summary", headers=stack.headers)
        body = summary.json()
        return bool(body["pending"] == 0 and sum(g["comments"] for g in body["groups"]) == len(COMMENTS))

    await eventually(analysed, within=30)
    await stack.scores(journey_id, customers=CUSTOMERS, responses=2 * CUSTOMERS + len(COMMENTS))
    return {"journey": journey_id, "target": target, "persona": persona}


async def _rest(stack: Stack, journey_id: str) -> dict[str, Any]:
    """What the services answer for each of the view's fields."""

    async def get(client: httpx.AsyncClient, url: str, **params: Any) -> Any:
        response = await client.get(url, headers=stack.headers, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    j, s = f"/v1/journeys/{journey_id}", stack.scoring
    return {
        "journey": await get(stack.journey, j),
        "funnel": await get(stack.journey, f"{j}/funnel", window_hours=48),
        "paths": await get(stack.journey, f"{j}/paths", level="touchpoints", top=3),
        # one journey's trend asked on its own (the gateway groups every journey of the query by journey too)
        "week": await get(stack.feedback, "/v1/metrics/nps", journey="buy-a-bike", group_by="week"),
        "month": await get(stack.feedback, "/v1/metrics/nps", journey="buy-a-bike", group_by="month"),
        "portfolio": await get(s, f"{j}/portfolio"),
        "moments": await get(s, f"{j}/moments-of-truth"),
        "attribution": await get(s, f"{j}/attribution"),
        "markov": await get(s, f"{j}/attribution", model="markov"),
        "comments": await get(stack.feedback, "/v1/comments/summary", group_by="touchpoint"),
    }


def _settled(rest: dict[str, Any]) -> dict[str, Any]:
    """The answers but for their read times: the comment summary's `as_of`, the metrics' `computed_at`."""
    trends = {k: {**rest[k], "computed_at": None} for k in ("week", "month")}
    return {**rest, **trends, "comments": {**rest["comments"], "as_of": None}}


def _trend(view: dict[str, Any], rest: dict[str, Any], bucket: str) -> None:
    assert view["bucket"] == bucket.upper()
    assert (view["method"], view["source"], _t(view["asOf"])) == (rest["method"], rest["source"], _t(rest["as_of"]))
    expected = sorted(rest["groups"], key=lambda g: g["group"][bucket])
    assert [b["start"] for b in view["buckets"]] == [g["group"][bucket] for g in expected]
    for got, g in zip(view["buckets"], expected, strict=True):
        assert [got["value"], got["low"], got["high"], got["n"], got["adjusted"]] == [
            g["value"], g["interval_low"], g["interval_high"], g["n"], g["adjusted"]]  # fmt: skip
        assert [got["promoters"], got["passives"], got["detractors"]] == [
            g["promoters"], g["passives"], g["detractors"]]  # fmt: skip


def _attribution(view: list[dict[str, Any]], rest: dict[str, Any]) -> None:
    assert [a["model"] for a in view] == [a["model"].upper() for a in rest["attribution"]]
    for got, a in zip(view, rest["attribution"], strict=True):
        assert [got["conversions"], got["paths"], got["conversionProbability"], got["method"]] == [
            a["conversions"], a["paths"], a.get("conversion_probability"), a["method"]]  # fmt: skip
        assert _t(got["asOf"]) == _t(rest["as_of"])
        removal = a.get("removal_effect") or {}
        assert got["credits"] == [
            {"touchpointId": t, "credit": c, "low": a["low"][t], "high": a["high"][t], "removalEffect": removal.get(t)}
            for t, c in a["credit"].items()
        ]


class TestJourneyAnalytics:
    async def test_every_field_is_what_the_services_answer(self, processes: dict[str, str], stack: Stack) -> None:
        built = await _build(stack)
        journey_id, target = built["journey"], built["target"]
        for _ in range(20):  # until nothing moved in the services while the gateway read
            before = await _rest(stack, journey_id)
            view = await _gql(processes["gateway"], stack.headers, "buy-a-bike")
            after = await _rest(stack, journey_id)
            if _settled(before) == _settled(after):
                break
            await asyncio.sleep(0.5)
        else:
            changed = {k: (before[k], after[k]) for k in before if _settled(before)[k] != _settled(after)[k]}
            raise AssertionError(f"the services' answers kept changing: {changed}")
        rest = before

        # who it is for and who owns it
        journey, persona = rest["journey"], built["persona"]
        assert [view["owner"], view["team"], view["state"]] == ["Lena Vogel", "Bikes", "CURRENT"]
        assert [view["owner"], view["team"], view["state"].lower()] == [journey["owner"], journey["team"],
                                                                        journey["state"]]  # fmt: skip
        assert journey["persona_id"] == persona["id"]
        assert view["persona"] == {k: persona[k] for k in ("id", "key", "name", "role", "background", "needs", "goals",
                                                           "pains", "priority")}  # fmt: skip
        assert view["improves"] is None
        assert view["improvedBy"] == [{"id": target["id"], "key": "buy-a-bike-target", "state": "TARGET",
                                       "owner": "Jan Roth", "improves": {"id": journey_id, "key": "buy-a-bike"},
                                       "improvedBy": []}]  # fmt: skip
        assert target["improves_journey_id"] == journey_id

        # funnel: counts, conversions, drop-off, median times, as the journey service computes them
        funnel, f = view["funnel"], rest["funnel"]
        assert [funnel["windowHours"], funnel["windowFrom"], funnel["breakdown"], funnel["source"]] == [
            f["window_hours"], f["window_from"].upper(), f["breakdown"].upper(), f["source"]]  # fmt: skip
        assert [_t(funnel["since"]), _t(funnel["until"]), _t(funnel["asOf"])] == [
            _t(f["since"]), _t(f["until"]), _t(f["as_of"])]  # fmt: skip
        assert funnel["groups"] == [
            {"group": g["group"], "stages": [
                {"stage": {k: s["stage"][k] for k in ("id", "key", "name", "position")}, "customers": s["customers"],
                 "conversionFromPrevious": s["conversion_from_previous"], "conversionOverall": s["conversion_overall"],
                 "dropOff": s["drop_off"], "medianSecondsFromPrevious": s["median_seconds_from_previous"]}
                for s in g["stages"]]}
            for g in f["groups"]
        ]  # fmt: skip
        # everyone saw the ad, customers i % 3 != 0 went on to the shop, those of them with i % 4 == 0 called
        assert [s["customers"] for s in funnel["groups"][0]["stages"]] == [CUSTOMERS, 60, 15]

        # top paths
        paths, p = view["topPaths"], rest["paths"]
        assert [paths["level"], paths["collapse"], paths["customers"], paths["otherCustomers"], paths["source"]] == [
            "TOUCHPOINTS", p["collapse"].upper(), p["customers"], p["other_customers"], p["source"]]  # fmt: skip
        assert _t(paths["asOf"]) == _t(p["as_of"])
        assert paths["paths"] == p["paths"]
        assert len(paths["paths"]) == 3
        assert paths["nodes"] == p["nodes"]
        assert paths["links"] == p["links"]
        assert paths["customers"] == CUSTOMERS

        # NPS per week and per month: n, interval and counts of each bucket
        _trend(view["week"], rest["week"], "week")
        _trend(view["month"], rest["month"], "month")
        assert [b["n"] for b in view["month"]["buckets"]] == [CUSTOMERS + 3, 2]
        assert len(view["week"]["buckets"]) == 3

        # the scoring snapshot's portfolio, moments of truth and attribution
        portfolio, pf = view["portfolio"], rest["portfolio"]["portfolio"]
        assert [portfolio["relevanceThreshold"], portfolio["reachThreshold"], portfolio["budgetBurners"]] == [
            pf["relevance_threshold"], pf["reach_threshold"], pf["budget_burners"]]  # fmt: skip
        assert {q["quadrant"]: q["touchpointIds"] for q in portfolio["quadrants"]} == pf["quadrants"]
        assert _t(portfolio["asOf"]) == _t(rest["portfolio"]["as_of"])
        moments, m = view["momentsOfTruth"], rest["moments"]["moments_of_truth"]
        assert [moments[k] for k in ("coverage", "confirmed", "unconfirmed", "undiscovered")] == [
            m[k] for k in ("coverage", "confirmed", "unconfirmed", "undiscovered")]  # fmt: skip
        assert _t(moments["asOf"]) == _t(rest["moments"]["as_of"])
        _attribution(view["attribution"], rest["attribution"])
        _attribution(view["markov"], rest["markov"])
        assert len(view["attribution"]) == 7
        assert [a["model"] for a in view["markov"]] == ["MARKOV"]

        # each step's comments: the summary of its touchpoint's
        groups = {g["group"]: g for g in rest["comments"]["groups"]}
        steps = [st for s in view["stages"] for st in s["steps"]]
        assert sorted(st["touchpoint"]["key"] for st in steps) == ["ad", "shop", "support"]
        for step in steps:
            g = groups.get(step["touchpoint"]["key"])
            sentiment = step["sentiment"]
            # the summary's read time: not after the last read (the response cache may answer with an
            # earlier read of an unchanged workspace, so not necessarily after the first)
            read_at = datetime.fromisoformat(sentiment["asOf"])
            assert read_at <= datetime.fromisoformat(after["comments"]["as_of"])
            if g is None:
                assert [sentiment["comments"], sentiment["meanSentiment"], step["themes"]] == [0, None, []]
                continue
            assert [sentiment[k] for k in ("comments", "meanSentiment", "positive", "neutral", "negative")] == [
                g[k] for k in ("comments", "mean_sentiment", "positive", "neutral", "negative")]  # fmt: skip
            assert step["themes"] == [{"theme": t["theme"], "n": t["n"], "meanSentiment": t["mean_sentiment"]}
                                      for t in g["themes"]]  # fmt: skip
        by_key = {st["touchpoint"]["key"]: st for st in steps}
        assert [by_key[k]["sentiment"]["comments"] for k in ("ad", "shop", "support")] == [0, 3, 2]
        assert by_key["support"]["sentiment"]["negative"] == 2
        assert "staff" in {t["theme"] for t in by_key["shop"]["themes"]}

    async def test_a_target_journey_names_the_journey_it_improves(
        self, processes: dict[str, str], stack: Stack
    ) -> None:
        current = await _journey(stack, "POST", "/v1/journeys", 201, json={"key": "now", "name": "Now"})
        await _journey(stack, "POST", "/v1/journeys", 201, json={
            "key": "next", "name": "Next", "state": "target", "improves_journey_id": current["id"]})  # fmt: skip
        query = "query($key: String!) { journey(key: $key) { state persona { id } improves { id key } "
        query += "improvedBy { id } } }"
        transport = HTTPXAsyncTransport(url=f"{processes['gateway']}/graphql", headers=stack.headers, timeout=30)
        async with Client(transport=transport) as session:
            view = (await session.execute(GraphQLRequest(query, variable_values={"key": "next"})))["journey"]
        assert view == {"state": "TARGET", "persona": None, "improves": {"id": current["id"], "key": "now"},
                        "improvedBy": []}  # fmt: skip


PAGE_QUERY = """
{ journeys(first: 10) { edges { node { key owner persona { key } improves { key } improvedBy { key }
  funnel { groups { stages { customers } } } topPaths { customers } npsTrend(bucket: WEEK) { buckets { n } }
  portfolio { budgetBurners } momentsOfTruth { coverage } attribution { model }
  stages { steps { sentiment { comments } themes { theme } } } } } } }
"""


class TestAnalyticsCalls:
    async def test_a_page_of_journeys_costs_one_call_per_batched_read(
        self, processes: dict[str, str], stack: Stack
    ) -> None:
        """The batched reads (maps, targets, scores, NPS trend, comments) cost one call each for the whole
        page; the funnel and the paths, which the journey service reads one journey at a time, one each."""
        for key in ("a", "b"):
            await stack.build_journey(key, [(f"{key}{i}", "buy", None, False) for i in range(3)])
        a = (await _journey(stack, "GET", "/v1/journeys", 200, params={"key": "a"}))["items"][0]
        await _journey(stack, "POST", "/v1/journeys", 201, json={
            "key": "c", "name": "c", "state": "target", "improves_journey_id": a["id"]})  # fmt: skip
        app = create_app(GatewaySettings(journey_url=processes["journey"], feedback_url=processes["feedback"],
                                         scoring_url=processes["scoring"]))  # fmt: skip
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            before = app.state.services.calls
            response = await client.post("/graphql", headers=stack.headers, json={"query": PAGE_QUERY})
            calls = app.state.services.calls - before
        await app.state.services.close()
        body = response.json()
        assert "errors" not in body, body
        nodes = {e["node"]["key"]: e["node"] for e in body["data"]["journeys"]["edges"]}
        assert sorted(nodes) == ["a", "b", "c"]
        assert nodes["a"]["improvedBy"] == [{"key": "c"}]
        assert nodes["c"]["improves"] == {"key": "a"}
        assert [len(s["steps"]) for s in nodes["a"]["stages"]] == [0, 3, 0]
        # the list, maps, target journeys, scores, NPS trend, comments; funnel and paths per journey
        assert calls == 6 + 2 * len(nodes) == 12
