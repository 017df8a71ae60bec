"""NPS by touchpoint over 10,000,000 responses (JG_BENCH_RESPONSES to change), through the API
(`GET /v1/metrics/nps?group_by=touchpoint`, answered from the monthly rollup) next to the raw SQL scan
of the same response table, in the same run. Target: API p50 ≤ 20 ms.

The rows are loaded with SQL (generate_series; uuidv7() needs PostgreSQL 18, the embedded default),
not through the API: 10 M API writes would take the better part of an hour here. The daily and monthly
rollups (a projection of the `feedback-projections` consumer) are then built with the aggregation its consumer runs
(store/rollups.py), and the API answer is checked against the raw scan. Each touchpoint sits in one
journey and stage, as in a real journey map, and every touchpoint has responses on every day of the
year: 73,000 daily rows, hence the monthly level (2,400 rows) for whole months.
"""

from __future__ import annotations

import os
import time

import asyncpg
import httpx

from bench.env import BenchEnv, summary
from services.common.db import asyncpg_dsn

N = int(os.environ.get("JG_BENCH_RESPONSES", "10000000"))
CHUNK = 1_000_000
TOUCHPOINTS, API_ROUNDS, RAW_ROUNDS = 200, 50, 5

LOAD = """
INSERT INTO response (id, workspace_id, survey_id, survey_version, content_hash, journey_key, stage_key,
  touchpoint_key, channel, submitted_at, answers, metadata, nps, created_at, analysed_at)
SELECT uuidv7(), 'bench', $1, 1, 'bench', 'journey-' || (g % $4 % 5), 'stage-' || (g % $4 % 3),
  'tp-' || (g % $4), 'web',
  timestamptz '2025-01-01' + (g / $4 % 365) * interval '1 day' + (g % 86400) * interval '1 second',
  jsonb_build_object('recommend', (g * 7) % 11), '{}'::jsonb, (g * 7) % 11, now(), now()
FROM generate_series($2::bigint, $3::bigint) g
"""
ROLLUP = """
INSERT INTO response_rollup{suffix} (workspace_id, survey_id, journey_key, stage_key, touchpoint_key, {period},
  nps_n, promoters, passives, detractors, csat_n, csat_satisfied, ces_n, ces_sum, ces_sumsq)
SELECT workspace_id, survey_id, coalesce(journey_key, ''), coalesce(stage_key, ''), coalesce(touchpoint_key, ''),
  {expr}, count(nps), count(*) FILTER (WHERE nps >= 9), count(*) FILTER (WHERE nps BETWEEN 7 AND 8),
  count(*) FILTER (WHERE nps <= 6), count(csat), count(*) FILTER (WHERE csat >= 4),
  count(ces), coalesce(sum(ces), 0), coalesce(sum(ces * ces), 0)
FROM response WHERE workspace_id = 'bench' AND survey_id = $1 GROUP BY 1, 2, 3, 4, 5, 6
"""
RAW = """
SELECT touchpoint_key, count(nps) AS n, count(*) FILTER (WHERE nps >= 9) AS promoters,
  count(*) FILTER (WHERE nps BETWEEN 7 AND 8) AS passives, count(*) FILTER (WHERE nps <= 6) AS detractors
FROM response WHERE workspace_id = 'bench' AND nps IS NOT NULL GROUP BY touchpoint_key ORDER BY touchpoint_key
"""


async def main(env: BenchEnv) -> None:
    database = "bench_feedback_metrics"
    base = await env.serve("services.feedback.app:create_app", env_prefix="FEEDBACK_", database=database)
    headers = {"Authorization": f"Bearer {env.token('bench', ['admin'])}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=600) as api:
        survey = (
            await api.post(
                "/v1/surveys",
                json={
                    "key": "bench",
                    "name": "Bench",
                    "kind": "nps",
                    "status": "active",
                    "questions": [{"key": "recommend", "type": "nps", "text": {"en": "Recommend?"}}],
                },
            )
        ).json()
        conn = await asyncpg.connect(asyncpg_dsn(env.database_url(database)))
        try:
            started = time.perf_counter()
            for low in range(1, N + 1, CHUNK):
                await conn.execute(LOAD, survey["id"], low, min(N, low + CHUNK - 1), TOUCHPOINTS)
            loaded = time.perf_counter() - started
            started = time.perf_counter()
            for suffix, period, expr in (
                ("", "day", "(submitted_at AT TIME ZONE 'UTC')::date"),
                ("_month", "month", "date_trunc('month', submitted_at AT TIME ZONE 'UTC')::date"),
            ):
                await conn.execute(ROLLUP.format(suffix=suffix, period=period, expr=expr), survey["id"])
            await conn.execute("ANALYZE response; ANALYZE response_rollup")
            built = time.perf_counter() - started
            days = await conn.fetchval("SELECT count(*) FROM response_rollup WHERE workspace_id = 'bench'")
            months = await conn.fetchval("SELECT count(*) FROM response_rollup_month WHERE workspace_id = 'bench'")
            print(
                f"loaded {N:,} responses by SQL in {loaded:.0f} s; rollups ({days:,} day rows, {months:,} month rows) "
                f"built in {built:.0f} s"
            )

            raw_ms = []
            for _ in range(RAW_ROUNDS):
                t0 = time.perf_counter()
                raw_rows = await conn.fetch(RAW)
                raw_ms.append((time.perf_counter() - t0) * 1000)
        finally:
            await conn.close()

        params = {"group_by": "touchpoint"}
        first = (await api.get("/v1/metrics/nps", params=params)).json()
        assert (first["source"], first["rollup_level"]) == ("projection", "month"), first["source"]
        by_tp = {
            g["group"]["touchpoint"]: (g["n"], g["promoters"], g["passives"], g["detractors"]) for g in first["groups"]
        }
        expected = {r["touchpoint_key"]: (r["n"], r["promoters"], r["passives"], r["detractors"]) for r in raw_rows}
        assert by_tp == expected, "rollup and raw scan disagree"
        api_ms = []
        for _ in range(API_ROUNDS):
            t0 = time.perf_counter()
            response = await api.get("/v1/metrics/nps", params=params)
            api_ms.append((time.perf_counter() - t0) * 1000)
            response.raise_for_status()
    a, r = summary(api_ms), summary(raw_ms)
    print(f"NPS by touchpoint ({TOUCHPOINTS} groups) over {N:,} responses:")
    print(
        f"  GET /v1/metrics/nps (month rollup) : p50 {a['p50']:8.1f} ms  p99 {a['p99']:8.1f} ms  (target p50 <= 20 ms)"
    )
    print(f"  raw SQL scan (asyncpg)             : p50 {r['p50']:8.1f} ms  p99 {r['p99']:8.1f} ms")
    print(f"  ratio raw / API                    : {r['p50'] / a['p50']:.0f}x")
