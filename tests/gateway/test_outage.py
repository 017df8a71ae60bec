"""One service down: a gateway process whose feedback service is a process of its own, stopped in the
middle of the test. The answer still carries the journey and its scores, with GraphQL errors at the
paths of what the feedback service would have given; never a blank 500."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Keys, Servers
from tests.gateway.test_unified_view import VIEW_QUERY
from tests.scoring.factories import Stack
from tests.uvicorn_server import running_service


async def _ask(gateway: str, stack: Stack) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{gateway}/graphql", headers=stack.headers, json={"query": VIEW_QUERY, "variables": {"key": "outage"}}
        )
    return response.status_code, response.json()


async def test_a_stopped_feedback_service_nulls_only_its_fields(
    processes: dict[str, str], stack: Stack, servers: Servers, gateway_nats: str, keys: Keys, tmp_path: Path
) -> None:
    await stack.build_journey("outage", [(f"o{i}", "need", None, False) for i in range(3)])
    own = Servers(servers.database_url_template, gateway_nats)

    def start(factory: str, prefix: str, **env: str) -> Any:
        return running_service(factory, env_prefix=prefix, servers=own, keys=keys, log_dir=tmp_path, extra_env=env)

    feedback = start("services.feedback.app:create_app", "FEEDBACK_")
    feedback_url = await asyncio.to_thread(feedback.__enter__)
    stopped = False
    try:
        urls = {"GATEWAY_JOURNEY_URL": processes["journey"], "GATEWAY_SCORING_URL": processes["scoring"],
                "GATEWAY_FEEDBACK_URL": feedback_url, "GATEWAY_SERVICE_TIMEOUT_SECONDS": "3",
                "GATEWAY_RESPONSE_CACHE_SECONDS": "0"}  # fmt: skip
        gateway_process = start("gateway.app:create_app", "GATEWAY_", **urls)
        gateway = await asyncio.to_thread(gateway_process.__enter__)
        try:
            status, before = await _ask(gateway, stack)
            assert status == 200
            assert "errors" not in before, before
            steps = [st for s in before["data"]["journey"]["stages"] for st in s["steps"]]
            assert [st["nps"]["n"] for st in steps] == [0, 0, 0]

            feedback.__exit__(None, None, None)  # the feedback service's process stops
            stopped = True
            status, after = await _ask(gateway, stack)
        finally:
            gateway_process.__exit__(None, None, None)
    finally:
        if not stopped:
            feedback.__exit__(None, None, None)

    assert status == 200
    journey = after["data"]["journey"]
    assert journey["key"] == "outage"
    steps = [st for s in journey["stages"] for st in s["steps"]]
    assert [st["touchpoint"]["key"] for st in steps] == ["o0", "o1", "o2"]
    assert all(st["nps"] is None and st["csat"] is None and st["ces"] is None for st in steps)
    paths = [e["path"] for e in after["errors"]]
    assert all(p[:2] == ["journey", "stages"] and p[3] == "steps" and len(p) == 6 for p in paths), paths
    assert sorted(p[5] for p in paths) == ["ces"] * 3 + ["csat"] * 3 + ["nps"] * 3
    assert {e["extensions"]["service"] for e in after["errors"]} == {"feedback"}
    assert {e["extensions"]["code"] for e in after["errors"]} == {"SERVICE_UNAVAILABLE"}
