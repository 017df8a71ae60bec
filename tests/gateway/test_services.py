"""How the gateway calls the services: identical reads in flight at once are one call (per caller's
token), and the caller's trace goes on into every call. The services are an httpx transport here
that records what reaches it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from gateway.app import create_app
from gateway.settings import GatewaySettings

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


async def test_identical_reads_in_flight_share_one_call_per_token() -> None:
    recorder = Recorder()
    answers = await _ask_many(recorder, ["a"] * 5 + ["b"] * 3)
    assert all(a == {"data": {"journey": None}} for a in answers)
    assert sorted(r.headers["authorization"] for r in recorder.requests) == ["Bearer a", "Bearer b"]


async def test_the_callers_trace_goes_on_into_the_service_calls() -> None:
    recorder = Recorder()
    traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    await _ask_many(recorder, ["a"], headers={"traceparent": traceparent})
    [call] = recorder.requests
    assert call.headers["traceparent"].split("-")[1] == TRACE_ID
