"""Feedback ingest, over real HTTP to the feedback service in its own uvicorn process (one worker):

1. single `POST /v1/responses` at 64 concurrent connections (auth, Idempotency-Key, validation against
   the survey version, the response and its event in one statement; the projections — rollups, cases,
   webhook deliveries — applied by the service's consumers in the same process meanwhile) next to a
   minimal endpoint doing one raw asyncpg INSERT, on the same stack (the kit's service app: auth, rate
   limit, request ids, metrics, tracing) and, for scale, on bare FastAPI; goal ≥ 0.5× of the
   same-stack reference.
2. `POST /v1/responses/bulk` (10,000 per call) rows/s next to a COPY of the rows it stored into a
   table shaped like `response` (its columns and 7 indexes: the reference) and, for scale, a COPY of as
   many rows into a table with a primary key only; the sides alternate call by call; floor 0.11×
   (before the events contract), goal ≥ 0.3× of the response-shaped COPY.
"""

from __future__ import annotations

import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

import asyncpg
import httpx
import orjson

from bench.env import BenchEnv, caught_up, wrk_load
from services.common.db import asyncpg_dsn

CONNECTIONS, SECONDS, WARMUP_SECONDS = 64, 10, 3
BULK_SIZE, BULK_CALLS = 10_000, 5
_COLUMNS = (
    "SELECT attname FROM pg_attribute WHERE attrelid = 'response'::regclass AND attnum > 0 AND NOT attisdropped "
    "ORDER BY attnum"
)


LUA = Path(__file__).with_name("post_response.lua")


def _wrk(url: str, headers: dict[str, str], *, survey_id: str, tag: str, key: bool, seconds: int) -> dict[str, float]:
    env = {"SID": survey_id, "TAG": tag, "KEY": "1" if key else "0"}
    return wrk_load(url, headers, script=LUA, connections=CONNECTIONS, seconds=seconds, env=env)


def _bodies(survey_id: str, n: int, tag: str) -> list[dict[str, Any]]:
    return [
        {
            "survey_id": survey_id,
            "response_id": f"{tag}-{i}",
            "customer_external_id": f"C-{i % 5000}",
            "touchpoint_key": f"tp-{i % 50}",
            "channel": "web",
            "answers": {"recommend": i % 11, "reason": "ok"},
            "comment": "Fast delivery, friendly staff." if i % 3 == 0 else None,
        }
        for i in range(n)
    ]


async def main(env: BenchEnv) -> None:
    workspace = "bench"
    base = await env.serve("services.feedback.app:create_app", env_prefix="FEEDBACK_", database="bench_feedback_ingest")
    ref_db = "bench_feedback_reference"
    ref = await env.serve("bench.feedback_reference:create_app", env_prefix="FBREF_", database=ref_db)
    stack = await env.serve("bench.feedback_reference:create_stack_app", env_prefix="FBSTACK_", database=ref_db)
    headers = {"Authorization": f"Bearer {env.token(workspace, ['admin'])}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as api:
        survey = (
            await api.post(
                "/v1/surveys",
                json={
                    "key": "bench",
                    "name": "Bench",
                    "kind": "nps",
                    "status": "active",
                    "questions": [
                        {"key": "recommend", "type": "nps", "required": True, "text": {"en": "Recommend?"}},
                        {"key": "reason", "type": "text", "text": {"en": "Why?"}},
                    ],
                },
            )
        ).json()
        sid = survey["id"]
        # 1. single POST, each side warmed up first
        if shutil.which("wrk") is None:
            print("single POST: skipped, wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
        else:
            auth = {"Authorization": headers["Authorization"]}
            for tag in ("warm", "one"):
                seconds = WARMUP_SECONDS if tag == "warm" else SECONDS
                await caught_up(api)
                a = _wrk(f"{base}/v1/responses", auth, survey_id=sid, tag=tag, key=True, seconds=seconds)
                st = _wrk(f"{stack}/v1/insert", auth, survey_id=sid, tag=tag, key=False, seconds=seconds)
                r = _wrk(f"{ref}/insert", {}, survey_id=sid, tag=tag, key=False, seconds=seconds)
            print(f"single POST /v1/responses, {CONNECTIONS} connections, {SECONDS} s each (wrk):")
            for label, m in (("feedback API", a), ("raw INSERT, same stack", st), ("raw INSERT, bare FastAPI", r)):
                print(f"  {label:24}: {m['rps']:7.0f} req/s  p50 {m['p50']:6.1f} ms  p99 {m['p99']:6.1f} ms")
            print(f"  ratio to the same stack : {a['rps'] / st['rps']:.2f}x (goal >= 0.5x)")
            print(f"  ratio to bare FastAPI   : {a['rps'] / r['rps']:.2f}x")

        # 2. bulk: each API call is followed by a COPY of as many rows into the reference table (only
        # a primary key), and by a COPY of the rows it stored into a scratch table shaped like
        # `response` (same columns and indexes), so all sides see the same phase of the shared
        # machine; bodies and records are built before the clock starts on every side.
        await caught_up(api)
        conn = await asyncpg.connect(asyncpg_dsn(env.database_url(ref_db)))
        own = await asyncpg.connect(asyncpg_dsn(env.database_url("bench_feedback_ingest")))
        await own.execute("DROP TABLE IF EXISTS response_scratch")
        await own.execute("CREATE TABLE response_scratch (LIKE response INCLUDING ALL)")
        columns = [r["attname"] for r in await own.fetch(_COLUMNS)]
        select = ", ".join(f"{c}::text" if c in ("answers", "metadata", "themes") else c for c in columns)
        api_calls: list[float] = []
        copy_calls: list[float] = []
        shaped_calls: list[float] = []
        api_rows = 0
        try:
            for call in range(BULK_CALLS):
                body = orjson.dumps({"items": _bodies(sid, BULK_SIZE, f"bulk{call}")})
                t0 = time.perf_counter()
                response = await api.post("/v1/responses/bulk", content=body,
                                          headers={"content-type": "application/json"})  # fmt: skip
                response.raise_for_status()
                api_calls.append(time.perf_counter() - t0)
                api_rows += response.json()["counts"]["created"]
                now = datetime.now(UTC)
                records = [
                    (uuid.uuid4(), "bench", uuid.UUID(sid), b["response_id"], b["customer_external_id"],
                     b["touchpoint_key"], b["channel"], now, orjson.dumps(b["answers"]).decode(), b["comment"],
                     b["answers"]["recommend"], now)
                    for b in _bodies(sid, BULK_SIZE, f"copy{call}")
                ]  # fmt: skip
                t0 = time.perf_counter()
                async with conn.transaction():
                    await conn.copy_records_to_table("ref_response", records=records)
                copy_calls.append(time.perf_counter() - t0)
                stored = [
                    tuple(r)
                    for r in await own.fetch(
                        f"SELECT {select} FROM response WHERE workspace_id = $1 AND response_id LIKE $2",
                        workspace,
                        f"bulk{call}-%",
                    )
                ]
                t0 = time.perf_counter()
                async with own.transaction():
                    await own.copy_records_to_table("response_scratch", records=stored, columns=columns)
                shaped_calls.append(time.perf_counter() - t0)
            await own.execute("DROP TABLE response_scratch")
        finally:
            await conn.close()
            await own.close()
    assert api_rows == BULK_SIZE * BULK_CALLS, api_rows
    bulk_rps, copy_rps = api_rows / sum(api_calls), api_rows / sum(copy_calls)
    shaped_rps = api_rows / sum(shaped_calls)
    print(f"bulk ingest, {BULK_CALLS} calls x {BULK_SIZE} rows, API call and COPY alternate:")
    print(
        f"  POST /v1/responses/bulk : {bulk_rps:9.0f} rows/s, median call {median(api_calls) * 1000:.0f} ms "
        "(JSON over HTTP, validation, the responses and their events)"
    )
    print(f"  raw asyncpg COPY        : {copy_rps:9.0f} rows/s, median call {median(copy_calls) * 1000:.0f} ms "
          "(a table with a primary key only)")  # fmt: skip
    print(f"  COPY, response's shape  : {shaped_rps:9.0f} rows/s, median call {median(shaped_calls) * 1000:.0f} ms "
          "(the stored rows, into a table with response's columns and indexes)")  # fmt: skip
    ratio = bulk_rps / shaped_rps
    verdict = "goal met" if ratio >= 0.3 else "goal NOT met"
    print(f"  ratio to response-shaped: {ratio:.2f}x (floor 0.11x, goal >= 0.3x): {verdict}")
    print(f"  ratio to primary key only: {bulk_rps / copy_rps:.2f}x")
