"""How the gateway calls the services: identical reads in flight at once are one call (per caller's
token), and the caller's trace goes on into every call. The services are an httpx transport here
that records what reaches it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.conftest import Keys

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


class Recorder:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        await asyncio.sleep(0.05)  # long enough for the concurrent requests to meet in flight
        return httpx.Response(200, json={"items": [], "next_cursor": None})


async def _ask_many(recorder: Recorder, tokens: list[str], headers: dict[str, str] | None = None) -> list[Any]:
    app = create_app(GatewaySettings(), transport=httpx.MockTransport(recorder))
    query = {"query": '{ journey(key: "k") { id } }'}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        answers = await asyncio.gather(
            *(
                client.post("/graphql", json=query, headers={"Authorization": f"Bearer {t}", **(headers or {})})
                for t in tokens
            )
        )
    return [a.json() for a in answers]


async def test_identical_reads_in_flight_share_one_call_per_token(keys: Keys) -> None:
    recorder = Recorder()
    a, b = keys.token("gw", ["admin"], subject="a"), keys.token("gw", ["admin"], subject="b")
    answers = await _ask_many(recorder, [a] * 5 + [b] * 3)
    assert all(answer == {"data": {"journey": None}} for answer in answers)
    assert sorted(r.headers["authorization"] for r in recorder.requests) == sorted([f"Bearer {a}", f"Bearer {b}"])


async def test_the_callers_trace_goes_on_into_the_service_calls(keys: Keys) -> None:
    recorder = Recorder()
    traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    await _ask_many(recorder, [keys.token("gw", ["admin"])], headers={"traceparent": traceparent})
    [call] = recorder.requests
    assert call.headers["traceparent"].split("-")[1] == TRACE_ID


JOURNEY_ID, TOUCHPOINT_ID = "01000000-0000-7000-8000-000000000001", "01000000-0000-7000-8000-000000000002"
MAP = {
    "journey": {"id": JOURNEY_ID, "key": "j", "name": "J", "status": "active", "owner": "cx-team", "team": "web",
                "state": "current", "improves_journey_id": None},
    "persona": None,
    "stages": [{"id": "01000000-0000-7000-8000-000000000003", "key": "s", "name": "S", "position": 0, "steps": [
        {"id": "01000000-0000-7000-8000-000000000004", "position": 0, "moment_of_truth": True, "expected_emotion": 1,
         "touchpoint": {"id": TOUCHPOINT_ID, "key": "t", "name": "T", "channel": "web"}}]}],
}  # fmt: skip
ESTIMATE = {"value": 80.0, "low": 70.0, "high": 90.0, "n": 40}
SCORES = {"journey_id": JOURNEY_ID, "touchpoints": [{
    "touchpoint_id": TOUCHPOINT_ID, "reach": 0.5, "reach_n": 20, "relevance": 3.0, "relevance_low": 1.0,
    "relevance_high": 5.0, "relevance_significant": True, "quadrant": "core", "budget_burner": False,
    "moment_of_truth": "confirmed", "pain_point": {"pain_point": False}, "csat": ESTIMATE,
    "ces": ESTIMATE}]}  # fmt: skip


def _services_with_feedback_down(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/v1/journey-maps":
        return httpx.Response(200, json={"items": [MAP], "not_found": []})
    if request.url.path == "/v1/scores":
        return httpx.Response(200, json={"items": [SCORES], "not_found": []})
    return httpx.Response(503, json={"title": "Service Unavailable", "status": 503, "detail": "feedback is down"})


async def test_a_service_down_leaves_the_rest_of_the_view_and_errors_where_it_is_missing(
    bearer: dict[str, str],
) -> None:
    app = create_app(GatewaySettings(), transport=httpx.MockTransport(_services_with_feedback_down))
    query = (
        "query($id: ID!) { journey(id: $id) { key stages { steps { ...Measured } } } } "
        "fragment Measured on Step { touchpoint { key } score { quadrant reachN } nps { value n } }"
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        body = (
            await client.post("/graphql", json={"query": query, "variables": {"id": JOURNEY_ID}},
                              headers=bearer)
        ).json()  # fmt: skip
    [error] = body["errors"]
    assert error["path"] == ["journey", "stages", 0, "steps", 0, "nps"]
    assert error["extensions"]["service"] == "feedback"
    assert error["extensions"]["status"] == 503
    assert body["data"]["journey"] == {
        "key": "j",
        "stages": [{"steps": [{"touchpoint": {"key": "t"}, "score": {"quadrant": "core", "reachN": 20}, "nps": None}]}],
    }
