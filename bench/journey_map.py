"""GET /v1/journeys/{id}/map for a journey of 10 stages × 200 steps (2,000 steps), over real HTTP
to the journey service in its own uvicorn process, next to the equivalent raw SQL (asyncpg, the
same rows: journey, persona, stages, steps joined with their touchpoints) in the same run.
Target: map p50 ≤ 3 × raw SQL p50. The document is assembled by PostgreSQL on every GET (a GET
writes nothing: there is no cache to keep)."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx

from bench.env import BenchEnv, bounded_post, summary
from services.common.db import asyncpg_dsn

STAGES, STEPS_PER_STAGE, ROUNDS = 10, 200, 300
RAW_SQL = """
SELECT j.*, p.name AS persona_name, s.id AS stage_id, s.key AS stage_key, s.name AS stage_name,
       s.position AS stage_position, st.id AS step_id, st.position AS step_position,
       st.moment_of_truth, st.expected_emotion, t.id AS touchpoint_id, t.key AS touchpoint_key,
       t.name AS touchpoint_name, t.channel, t.department, t.yearly_cost, t.currency, t.description,
       t.created_at AS touchpoint_created_at, t.updated_at AS touchpoint_updated_at
FROM journey j
LEFT JOIN persona p ON p.id = j.persona_id
JOIN stage s ON s.journey_id = j.id
LEFT JOIN journey_step st ON st.stage_id = s.id
LEFT JOIN touchpoint t ON t.id = st.touchpoint_id
WHERE j.id = $1 AND j.workspace_id = $2
ORDER BY s.position, st.position
"""


async def _build(client: httpx.AsyncClient) -> str:
    persona = (await client.post("/v1/personas", json={"key": "p", "name": "Persona"})).json()
    stages = [{"key": f"s{i}", "name": f"Stage {i}"} for i in range(STAGES)]
    journey = (
        await client.post(
            "/v1/journeys", json={"key": "big", "name": "Big", "persona_id": persona["id"], "stages": stages}
        )
    ).json()
    post = bounded_post(client)

    touchpoints = await asyncio.gather(*(
        post("/v1/touchpoints", {"key": f"tp{i}", "name": f"Touchpoint {i}", "channel": "web",
                                 "department": "Digital", "yearly_cost": "1000.00", "description": "x" * 40})
        for i in range(STEPS_PER_STAGE)
    ))  # fmt: skip
    stage_rows = (await client.get(f"/v1/journeys/{journey['id']}/stages")).json()
    for stage in stage_rows:  # stage by stage: steps of one journey are added one at a time anyway
        await asyncio.gather(*(
            post(f"/v1/journeys/{journey['id']}/steps", {"stage_id": stage["id"], "touchpoint_id": tp["id"]})
            for tp in touchpoints
        ))  # fmt: skip
    return str(journey["id"])


async def main(env: BenchEnv) -> None:
    workspace = "bench"
    base = await env.serve("services.journey.app:create_app", env_prefix="JOURNEY_", database="bench_journey_map")
    headers = {"Authorization": f"Bearer {env.token(workspace, ['admin'])}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        started = time.perf_counter()
        journey_id = await _build(client)
        print(f"built journey: {STAGES} stages x {STEPS_PER_STAGE} steps through the API in "
              f"{time.perf_counter() - started:.1f} s")  # fmt: skip
        doc = (await client.get(f"/v1/journeys/{journey_id}/map")).json()
        steps = sum(len(s["steps"]) for s in doc["stages"])
        assert steps == STAGES * STEPS_PER_STAGE, steps
        for _ in range(20):  # warm-up
            await client.get(f"/v1/journeys/{journey_id}/map")
        map_ms = []
        size = 0
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            response = await client.get(f"/v1/journeys/{journey_id}/map")
            map_ms.append((time.perf_counter() - t0) * 1000)
            size = len(response.content)
    conn = await asyncpg.connect(asyncpg_dsn(env.database_url("bench_journey_map")))
    try:
        stmt = await conn.prepare(RAW_SQL)
        for _ in range(20):
            await stmt.fetch(journey_id, workspace)
        sql_ms = []
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            rows = await stmt.fetch(journey_id, workspace)
            sql_ms.append((time.perf_counter() - t0) * 1000)
        assert len(rows) == STAGES * STEPS_PER_STAGE
    finally:
        await conn.close()
    m, s = summary(map_ms), summary(sql_ms)
    rows = [
        (f"GET /map over HTTP ({size // 1024} KiB JSON)", m),
        ("raw SQL, same rows (asyncpg, prepared statement)", s),
    ]
    print(f"{'measure':<56}{'p50 ms':>10}{'p99 ms':>10}{'n':>6}")
    for label, v in rows:
        print(f"{label:<56}{v['p50']:>10.2f}{v['p99']:>10.2f}{v['n']:>6}")
    ratio = m["p50"] / s["p50"]
    print(f"ratio at p50: {ratio:.2f}x raw SQL (target <= 3x): {'met' if ratio <= 3 else 'NOT met'}")
