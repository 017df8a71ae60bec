"""The unified journey view end to end: the journey, feedback and scoring services and the gateway as
processes of their own (on a NATS of the module's own), a journey built and fed through the
services' REST APIs, read back through the gateway with a real GraphQL client (gql), every number
checked against what the services answer directly."""

from __future__ import annotations

from typing import Any

import httpx
from gql import Client, GraphQLRequest
from gql.transport.httpx import HTTPXAsyncTransport

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.conftest import Keys, unique_name
from tests.scoring.factories import SCOPES, Stack, small_journey

VIEW_QUERY = """
query View($key: String!) {
  journey(key: $key) {
    id key name
    stages { key position steps { momentOfTruth touchpoint { id key channel }
      score { reach reachN relevance relevanceLow relevanceHigh quadrant painPoint csat { value low high n } }
      nps { value low high n } csat { value low high n method } ces { value low high n } } }
    health { score low high n method asOf }
  }
}
"""


async def _view(url: str, token_headers: dict[str, str], key: str) -> dict[str, Any]:
    transport = HTTPXAsyncTransport(url=f"{url}/graphql", headers=token_headers, timeout=30)
    async with Client(transport=transport) as session:
        result: dict[str, Any] = await session.execute(GraphQLRequest(VIEW_QUERY, variable_values={"key": key}))
        return result


class TestUnifiedView:
    async def test_every_number_is_what_the_services_answer(self, processes: dict[str, str], stack: Stack) -> None:
        built = await small_journey(stack)
        journey_id = built["journey"]["id"]
        view = (await _view(processes["gateway"], stack.headers, "buy-a-bike"))["journey"]
        journey_map = (await stack.journey.get(f"/v1/journeys/{journey_id}/map", headers=stack.headers)).json()
        scores = (await stack.scoring_get(f"/v1/journeys/{journey_id}/scores")).json()
        assert view["id"] == journey_id
        assert [s["key"] for s in view["stages"]] == [s["key"] for s in journey_map["stages"]]
        by_tp = {t["touchpoint_id"]: t for t in scores["touchpoints"]}
        steps = [st for s in view["stages"] for st in s["steps"]]
        assert len(steps) == sum(len(s["steps"]) for s in journey_map["stages"]) == 3
        for step in steps:
            expected = by_tp[step["touchpoint"]["id"]]
            score = step["score"]
            for field, name in [("reach", "reach"), ("reachN", "reach_n"), ("relevance", "relevance"),
                                ("relevanceLow", "relevance_low"), ("relevanceHigh", "relevance_high"),
                                ("quadrant", "quadrant")]:  # fmt: skip
                assert score[field] == expected[name], field
            assert score["csat"] == expected["csat"]
            assert score["painPoint"] == expected["pain_point"]["pain_point"]
            # the answers given at this touchpoint in this journey, as the feedback service counts them
            for metric in ("nps", "csat", "ces"):
                params = {"journey": "buy-a-bike", "touchpoint": step["touchpoint"]["key"]}
                url = f"/v1/metrics/{metric}"
                overall = (await stack.feedback.get(url, headers=stack.headers, params=params)).json()["overall"]
                got = step[metric]
                assert [got["value"], got["low"], got["high"], got["n"]] == [
                    overall["value"], overall["interval_low"], overall["interval_high"], overall["n"]
                ], metric  # fmt: skip
            assert step["csat"]["method"].startswith("CSAT")
        assert sum(step["csat"]["n"] for step in steps) == 90  # every customer rated the last touchpoint met
        health = scores["health"]
        assert view["health"]["score"] == health["score"]
        assert (view["health"]["low"], view["health"]["high"], view["health"]["n"]) == (
            health["low"], health["high"], health["n"])  # fmt: skip

    async def test_another_workspace_sees_nothing(self, processes: dict[str, str], stack: Stack, keys: Keys) -> None:
        await small_journey(stack)
        other = keys.headers(unique_name("gw-other"), SCOPES)
        assert (await _view(processes["gateway"], other, "buy-a-bike"))["journey"] is None


class TestPlanByLevel:
    async def test_the_service_calls_do_not_grow_with_the_steps(self, processes: dict[str, str], stack: Stack) -> None:
        """The same calls, whatever the number of steps: one per service and level (per metric)."""
        few = await stack.build_journey("few", [(f"f{i}", "need", None, False) for i in range(10)])
        many = await stack.build_journey("many", [(f"m{i}", "buy", None, False) for i in range(200)])
        app = create_app(GatewaySettings(journey_url=processes["journey"], feedback_url=processes["feedback"],
                                         scoring_url=processes["scoring"]))  # fmt: skip
        calls = []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            for journey, n in ((few[0], 10), (many[0], 200)):
                before = app.state.services.calls
                response = await client.post(
                    "/graphql", headers=stack.headers,
                    json={"query": VIEW_QUERY, "variables": {"key": journey["key"]}},
                )  # fmt: skip
                body = response.json()
                assert "errors" not in body, body
                assert sum(len(s["steps"]) for s in body["data"]["journey"]["stages"]) == n
                calls.append(app.state.services.calls - before)
            # Every journey of the page with its map and scores: still one call per service per level.
            before = app.state.services.calls
            page_query = "{ journeys(first: 10) { edges { cursor node { key stages { steps { score { reach } } } "
            page_query += "health { score } } } pageInfo { hasNextPage endCursor } } }"
            response = await client.post("/graphql", headers=stack.headers, json={"query": page_query})
            page = response.json()
            assert "errors" not in page, page
            listed = page["data"]["journeys"]
            by_key = {e["node"]["key"]: e["node"] for e in listed["edges"]}
            assert sorted(by_key) == ["few", "many"]
            assert sum(len(s["steps"]) for s in by_key["many"]["stages"]) == 200
            assert listed["pageInfo"] == {"hasNextPage": False, "endCursor": listed["edges"][-1]["cursor"]}
            calls.append(app.state.services.calls - before)
            # a page of one, then the next after its cursor
            first = "{ journeys(first: 1) { edges { cursor node { key } } pageInfo { hasNextPage endCursor } } }"
            one = (await client.post("/graphql", headers=stack.headers, json={"query": first})).json()["data"]
            assert one["journeys"]["pageInfo"]["hasNextPage"] is True
            after = one["journeys"]["pageInfo"]["endCursor"]
            rest = "query($after: String) { journeys(first: 1, after: $after) { edges { node { key } } "
            rest += "pageInfo { hasNextPage } } }"
            asked = {"query": rest, "variables": {"after": after}}
            two = (await client.post("/graphql", headers=stack.headers, json=asked)).json()["data"]
            keys = [one["journeys"]["edges"][0]["node"]["key"], two["journeys"]["edges"][0]["node"]["key"]]
            assert sorted(keys) == ["few", "many"]
            assert two["journeys"]["pageInfo"]["hasNextPage"] is False
        await app.state.services.close()
        # The journey by key, its map, the scores of its steps, NPS, CSAT and CES of its steps (one
        # grouped call each); for a page: the list, the maps, the scores.
        assert calls == [6, 6, 3]
