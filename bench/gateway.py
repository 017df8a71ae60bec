"""The unified journey view through the GraphQL gateway: one journey of 8 stages × 25 steps and one of
10 stages × 200 steps, every step with its scores and its NPS, CSAT and CES, the journey with its
health. All processes are real (journey, feedback, scoring, and three gateways; one uvicorn worker
each): the gateway as served (fast path, no response cache), (b) the same gateway with strawberry's
standard execution, and one with the response cache.

Next to it in the same run: (a) fetching the same data by direct parallel REST calls to the services
(the map; the scores; the three metrics grouped by journey and touchpoint), without assembling
anything; the service calls one query costs (counted on an in-process gateway over the same
services); the 8 × 25 view's throughput under wrk (one gateway worker, with and without the cache);
the latency of a cache hit (hits counted by the gateway's /metrics).
Targets (issue 14): p50 ≤ 30 ms for 8 × 25, ≤ 100 ms (goal 25 ms) for 10 × 200.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.env import BenchEnv, bounded_post, summary, until, wrk_load
from gateway.app import create_app
from gateway.settings import GatewaySettings

ROUNDS, WARM_UP = 60, 5
WRK_CONNECTIONS, WRK_SECONDS = 8, 10
LUA = Path(__file__).with_name("post_body.lua")
VIEW = """
query View($id: ID!) {
  journey(id: $id) {
    id key name
    stages { key steps { momentOfTruth touchpoint { key name channel }
      score { reach reachN relevance relevanceLow relevanceHigh quadrant painPoint }
      nps { value low high n } csat { value low high n } ces { value low high n } } }
    health { score low high n }
  }
}
"""


async def _build(client: httpx.AsyncClient, key: str, stages: int, steps: int) -> str:
    journey = (
        await client.post(
            "/v1/journeys",
            json={"key": key, "name": key, "stages": [{"key": f"s{i}", "name": f"Stage {i}"} for i in range(stages)]},
        )
    ).json()
    post = bounded_post(client)

    touchpoints = await asyncio.gather(
        *(post("/v1/touchpoints", {"key": f"{key}-tp{i}", "name": f"Touchpoint {i}", "channel": "web"})
          for i in range(steps))
    )  # fmt: skip
    for stage in (await client.get(f"/v1/journeys/{journey['id']}/stages")).json()["items"]:
        await asyncio.gather(
            *(post(f"/v1/journeys/{journey['id']}/steps", {"stage_id": stage["id"], "touchpoint_id": tp["id"]})
              for tp in touchpoints)
        )  # fmt: skip
    return str(journey["id"])


async def _time(call: Any) -> list[float]:
    for _ in range(WARM_UP):
        await call()
    took = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        await call()
        took.append((time.perf_counter() - started) * 1000)
    return took


async def _cache_hits(client: httpx.AsyncClient, gateway: str) -> float:
    text = (await client.get(f"{gateway}/metrics")).text
    found = re.search(r'^journeygraph_gateway_cache_total\{result="hit"\} ([\d.e+]+)$', text, re.M)
    return float(found[1]) if found else 0.0


async def main(env: BenchEnv) -> None:
    workspace = "bench"
    journey = await env.serve("services.journey.app:create_app", env_prefix="JOURNEY_", database="bench_gw_journey")
    feedback = await env.serve("services.feedback.app:create_app", env_prefix="FEEDBACK_", database="bench_gw_feedback")
    scoring = await env.serve("services.scoring.app:create_app", env_prefix="SCORING_", database="bench_gw_scoring")
    urls = {"GATEWAY_JOURNEY_URL": journey, "GATEWAY_FEEDBACK_URL": feedback, "GATEWAY_SCORING_URL": scoring}
    gateways = {}
    for name, settings in (
        ("fast", {"GATEWAY_RESPONSE_CACHE_SECONDS": "0"}),
        ("standard", {"GATEWAY_RESPONSE_CACHE_SECONDS": "0", "GATEWAY_FAST_EXECUTION": "false"}),
        ("cached", {"GATEWAY_RESPONSE_CACHE_SECONDS": "60"}),
    ):
        gateways[name] = await env.serve(
            "gateway.app:create_app", env_prefix="GATEWAY_", database=f"bench_gw_{name}", extra_env=urls | settings
        )
    headers = {"Authorization": f"Bearer {env.token(workspace, ['admin'])}"}
    shapes = {"8 × 25": (8, 25), "10 × 200": (10, 200)}
    async with (
        httpx.AsyncClient(base_url=journey, headers=headers, timeout=60) as j,
        httpx.AsyncClient(headers=headers, timeout=60) as c,
    ):
        ids = {}
        for label, (stages, steps) in shapes.items():
            started = time.perf_counter()
            ids[label] = await _build(j, label.replace(" × ", "x"), stages, steps)
            print(f"built {label} journey through the API in {time.perf_counter() - started:.1f} s", flush=True)
        for journey_id in ids.values():  # its first scores (empty: the bench times the reads, not the maths)
            (await c.post(f"{scoring}/v1/journeys/{journey_id}/recompute")).raise_for_status()

            async def scored(journey_id: str = journey_id) -> bool:
                return (await c.get(f"{scoring}/v1/journeys/{journey_id}/scores")).status_code == 200

            await until(scored, within=120)

        in_process = create_app(
            GatewaySettings(
                journey_url=journey,
                feedback_url=feedback,
                scoring_url=scoring,
                log_level="WARNING",
                nats_url=env.nats_url,
                auth_public_key=env.public_key,
                rate_limit="1000000/minute",
            )
        )
        print(f"{'unified view (sequential requests)':<52}{'p50 ms':>9}{'p99 ms':>9}{'calls':>7}{'target':>9}")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=in_process), base_url="http://gw", headers=headers, timeout=60
        ) as counting:
            for label, journey_id in ids.items():
                body = {"query": VIEW, "variables": {"id": journey_id}}
                answers = [(await c.post(f"{g}/graphql", json=body)).json() for g in gateways.values()]
                assert "errors" not in answers[0], answers[0]
                assert all(a == answers[0] for a in answers), "the gateways answer differently"
                steps = sum(len(s["steps"]) for s in answers[0]["data"]["journey"]["stages"])
                assert steps == shapes[label][0] * shapes[label][1], steps
                before = in_process.state.services.calls
                (await counting.post("/graphql", json=body)).raise_for_status()
                calls = in_process.state.services.calls - before

                def through(gateway: str, body: dict[str, Any] = body) -> Any:
                    async def call() -> None:
                        (await c.post(f"{gateway}/graphql", json=body)).raise_for_status()

                    return call

                async def direct(journey_id: str = journey_id, key: str = label.replace(" × ", "x")) -> None:
                    grouped: list[tuple[str, str | int | float | bool | None]] = [
                        ("journey", key),
                        ("group_by", "journey"),
                        ("group_by", "touchpoint"),
                    ]
                    responses = await asyncio.gather(
                        c.get(f"{journey}/v1/journey-maps", params={"id": journey_id}),
                        c.get(f"{scoring}/v1/scores", params={"journey_id": journey_id}),
                        *(c.get(f"{feedback}/v1/metrics/{m}", params=grouped) for m in ("nps", "csat", "ces")),
                    )
                    for r in responses:
                        r.raise_for_status()

                fast = summary(await _time(through(gateways["fast"])))
                standard = summary(await _time(through(gateways["standard"])))
                rest = summary(await _time(direct))
                hits_before = await _cache_hits(c, gateways["cached"])
                cached = summary(await _time(through(gateways["cached"])))
                hits = await _cache_hits(c, gateways["cached"]) - hits_before
                target = "≤ 30" if label == "8 × 25" else "≤ 100"
                rows = [
                    (f"gateway (fast path), {label}", fast, calls, target),
                    (f"(a) direct parallel REST, {label}", rest, 5, ""),
                    (f"(b) standard strawberry execution, {label}", standard, calls, ""),
                    (f"response cache hit, {label} ({hits:.0f} hits)", cached, 0, ""),
                ]
                for name, measured, made, goal in rows:
                    print(f"{name:<52}{measured['p50']:>9.1f}{measured['p99']:>9.1f}{made:>7}{goal:>9}")
                print(f"{'  ratio fast / direct REST (p50)':<52}{fast['p50'] / rest['p50']:>9.1f}×")
                print(f"{'  ratio standard / fast (p50)':<52}{standard['p50'] / fast['p50']:>9.1f}×", flush=True)
            if shutil.which("wrk") is None:
                print("throughput: skipped, wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
            else:
                body = {"query": VIEW, "variables": {"id": ids["8 × 25"]}}
                print(f"8 × 25 view under wrk, {WRK_CONNECTIONS} connections, {WRK_SECONDS} s, one gateway worker:")
                for name in ("fast", "standard", "cached"):
                    load = wrk_load(
                        f"{gateways[name]}/graphql", headers, script=LUA, connections=WRK_CONNECTIONS,
                        seconds=WRK_SECONDS, env={"BODY": orjson.dumps(body).decode()},
                    )  # fmt: skip
                    rps, p50, p99 = load["rps"], load["p50"], load["p99"]
                    print(f"  {name:<10}{rps:>9.0f} req/s   p50 {p50:>7.1f} ms   p99 {p99:>7.1f} ms")
        await in_process.state.services.close()
