"""The unified journey view through the GraphQL gateway: one journey of 8 stages × 25 steps and one of
10 stages × 200 steps, every step with its scores and its NPS, CSAT and CES, the journey with its
health. All four processes are real (journey, feedback, scoring, gateway; one uvicorn worker each).

Next to it in the same run: (a) fetching the same data by direct parallel REST calls to the services
(the map; the scores; the three metrics grouped by touchpoint), without assembling anything; the
service calls one query costs (counted on an in-process gateway over the same services).
Targets (issue 14): p50 ≤ 30 ms for 8 × 25, ≤ 100 ms (goal 25 ms) for 10 × 200. The fast-path
executor the issue asks for is not built yet: what is measured is strawberry's standard execution.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from bench.env import BenchEnv, bounded_post, summary, until
from gateway.app import create_app
from gateway.settings import GatewaySettings

ROUNDS, WARM_UP = 60, 5
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


async def main(env: BenchEnv) -> None:
    workspace = "bench"
    journey = await env.serve("services.journey.app:create_app", env_prefix="JOURNEY_", database="bench_gw_journey")
    feedback = await env.serve("services.feedback.app:create_app", env_prefix="FEEDBACK_", database="bench_gw_feedback")
    scoring = await env.serve("services.scoring.app:create_app", env_prefix="SCORING_", database="bench_gw_scoring")
    urls = {"GATEWAY_JOURNEY_URL": journey, "GATEWAY_FEEDBACK_URL": feedback, "GATEWAY_SCORING_URL": scoring}
    gateway = await env.serve("gateway.app:create_app", env_prefix="GATEWAY_", database="bench_gw", extra_env=urls)
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
            GatewaySettings(journey_url=journey, feedback_url=feedback, scoring_url=scoring, log_level="WARNING")
        )
        print(f"{'unified view (sequential requests)':<44}{'p50 ms':>9}{'p99 ms':>9}{'calls':>7}{'target':>12}")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=in_process), base_url="http://gw", headers=headers, timeout=60
        ) as counting:
            for label, journey_id in ids.items():
                body = {"query": VIEW, "variables": {"id": journey_id}}
                answer = (await c.post(f"{gateway}/graphql", json=body)).json()
                assert "errors" not in answer, answer
                steps = sum(len(s["steps"]) for s in answer["data"]["journey"]["stages"])
                assert steps == shapes[label][0] * shapes[label][1], steps
                before = in_process.state.services.calls
                (await counting.post("/graphql", json=body)).raise_for_status()
                calls = in_process.state.services.calls - before

                async def through_gateway(body: dict[str, Any] = body) -> None:
                    (await c.post(f"{gateway}/graphql", json=body)).raise_for_status()

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

                gw, rest = summary(await _time(through_gateway)), summary(await _time(direct))
                target = "≤ 30" if label == "8 × 25" else "≤ 100"
                print(f"{'gateway, ' + label:<44}{gw['p50']:>9.1f}{gw['p99']:>9.1f}{calls:>7}{target:>12}")
                print(f"{'(a) direct parallel REST, ' + label:<44}{rest['p50']:>9.1f}{rest['p99']:>9.1f}{5:>7}")
                print(f"{'ratio gateway / direct REST (p50)':<44}{gw['p50'] / rest['p50']:>9.1f}×")
        await in_process.state.services.close()
