"""The response cache: an answer is served again to the same workspace and scopes until an event of that
workspace arrives (over the package's real NATS) or a mutation goes through the gateway; two
workspaces never share an entry; answers with errors are never kept. The services are stood in for by
an httpx transport that answers each workspace with its own name and counts the calls; the last test
runs a gateway process over the real services, whose own events invalidate it."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import nats
import pytest

from gateway.app import create_app
from gateway.settings import GatewaySettings
from services.common.events import Event
from tests.conftest import Keys, Servers
from tests.gateway.test_services import JOURNEY_ID, MAP
from tests.scoring.factories import Stack
from tests.uvicorn_server import running_service

QUERY = {"query": "query($id: ID!) { journey(id: $id) { name } }", "variables": {"id": JOURNEY_ID}}


class Services:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.failing = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        token = request.headers["authorization"].removeprefix("Bearer ")
        workspace = jwt.decode(token, options={"verify_signature": False})["workspace"]
        self.calls.append(workspace)
        if self.failing:
            return httpx.Response(503, json={"title": "Service Unavailable", "status": 503, "detail": "down"})
        if request.method == "POST":
            return httpx.Response(201, json={"id": str(uuid.uuid4()), "key": "p", "name": "P"})
        journey: dict[str, Any] = dict(MAP["journey"])  # type: ignore[arg-type]
        journey_map = {**MAP, "journey": {**journey, "name": f"journey of {workspace}"}}
        return httpx.Response(200, json={"items": [journey_map], "not_found": []})


@pytest.fixture
async def gateway(gateway_nats: str) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    services = Services()
    app = create_app(GatewaySettings(response_cache_seconds=60), transport=httpx.MockTransport(services))
    async with app.router.lifespan_context(app):
        for _ in range(100):  # the cache serves once it follows the events
            if app.state.cache.live:
                break
            await asyncio.sleep(0.05)
        assert app.state.cache.live
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            yield client, services


async def _name(client: httpx.AsyncClient, headers: dict[str, str]) -> Any:
    body = (await client.post("/graphql", json=QUERY, headers=headers)).json()
    return body["data"]["journey"]["name"] if body.get("data") and body["data"]["journey"] else body


async def _publish(nats_url: str, workspace: str) -> None:
    event = Event[dict[str, Any]](
        id=uuid.uuid4(), type="journey.journey.updated", workspace_id=workspace,
        occurred_at=datetime.now(UTC), aggregate_id=JOURNEY_ID, version=2, data={},
    )  # fmt: skip
    connection = await nats.connect(nats_url)
    await connection.publish(event.type, event.model_dump_json().encode())
    await connection.flush()
    await connection.close()


async def _until(check: Any, seconds: float = 5) -> None:
    for _ in range(int(seconds / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not reached within {seconds} s")


async def test_two_workspaces_never_share_an_entry(gateway: tuple[httpx.AsyncClient, Services], keys: Keys) -> None:
    client, services = gateway
    a, b = keys.headers("ws-a", ["admin"]), keys.headers("ws-b", ["admin"])
    assert await _name(client, a) == "journey of ws-a"
    assert await _name(client, a) == "journey of ws-a"
    assert services.calls == ["ws-a"]  # the second answer came from the cache
    assert await _name(client, b) == "journey of ws-b"
    assert await _name(client, b) == "journey of ws-b"
    assert services.calls == ["ws-a", "ws-b"]


async def test_other_scopes_are_another_entry(gateway: tuple[httpx.AsyncClient, Services], keys: Keys) -> None:
    client, services = gateway
    await _name(client, keys.headers("ws-s", ["admin"]))
    await _name(client, keys.headers("ws-s", ["journeys:read"]))
    assert services.calls == ["ws-s", "ws-s"]


async def test_an_event_of_the_workspace_makes_its_answers_stale(
    gateway: tuple[httpx.AsyncClient, Services], keys: Keys, gateway_nats: str
) -> None:
    client, services = gateway
    a, b = keys.headers("ws-e", ["admin"]), keys.headers("ws-f", ["admin"])
    await _name(client, a)
    await _name(client, b)
    await _publish(gateway_nats, "ws-e")

    async def asked_again() -> bool:
        await _name(client, a)
        return services.calls.count("ws-e") == 2

    await _until(asked_again)
    await _name(client, b)
    assert services.calls.count("ws-f") == 1  # the other workspace's answer is still served


async def test_a_mutation_makes_its_workspaces_answers_stale(
    gateway: tuple[httpx.AsyncClient, Services], keys: Keys
) -> None:
    client, services = gateway
    a = keys.headers("ws-m", ["admin"])
    await _name(client, a)
    mutation = 'mutation { createPersona(input: {key: "p", name: "P"}) { id } }'
    await client.post("/graphql", json={"query": mutation}, headers=a)
    calls = len(services.calls)
    await _name(client, a)
    assert len(services.calls) == calls + 1


async def test_an_answer_with_errors_is_not_kept(gateway: tuple[httpx.AsyncClient, Services], keys: Keys) -> None:
    client, services = gateway
    a = keys.headers("ws-x", ["admin"])
    services.failing = True
    first = await _name(client, a)
    assert first["errors"][0]["extensions"]["status"] == 503
    services.failing = False
    assert await _name(client, a) == "journey of ws-x"
    assert services.calls == ["ws-x", "ws-x"]


async def test_the_services_events_invalidate_a_gateway_process(
    processes: dict[str, str], stack: Stack, servers: Servers, gateway_nats: str, keys: Keys, tmp_path: Path
) -> None:
    """End to end: a gateway process with a long-lived cache over the real services serves a journey's
    name from the cache until the journey service's event of its rename arrives."""
    journey, _ = await stack.build_journey("cached", [("c0", "need", None, False)])
    urls = {"GATEWAY_JOURNEY_URL": processes["journey"], "GATEWAY_SCORING_URL": processes["scoring"],
            "GATEWAY_FEEDBACK_URL": processes["feedback"], "GATEWAY_RESPONSE_CACHE_SECONDS": "600"}  # fmt: skip
    process = running_service(
        "gateway.app:create_app", env_prefix="GATEWAY_", servers=Servers(servers.database_url_template, gateway_nats),
        keys=keys, log_dir=tmp_path, extra_env=urls,
    )  # fmt: skip
    gateway = await asyncio.to_thread(process.__enter__)
    try:
        query = {"query": "query($id: ID!) { journey(id: $id) { name } }", "variables": {"id": journey["id"]}}
        async with httpx.AsyncClient(base_url=gateway, headers=stack.headers, timeout=30) as client:

            async def name() -> str:
                return str((await client.post("/graphql", json=query)).json()["data"]["journey"]["name"])

            async def hits() -> float:
                found = re.search(r'^journeygraph_gateway_cache_total\{result="hit"\} (\S+)$',
                                  (await client.get("/metrics")).text, re.M)  # fmt: skip
                return float(found[1]) if found else 0.0

            assert await name() == "cached"
            before = await hits()
            assert await name() == "cached"
            assert await hits() == before + 1  # the second answer came from the cache
            renamed = await stack.journey.patch(
                f"/v1/journeys/{journey['id']}", json={"name": "renamed"},
                headers=stack.headers,
            )  # fmt: skip
            assert renamed.status_code == 200, renamed.text

            async def shows_the_rename() -> bool:
                return await name() == "renamed"

            await _until(shows_the_rename, seconds=30)
    finally:
        process.__exit__(None, None, None)
