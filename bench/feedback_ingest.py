"""Feedback ingest, over real HTTP to the feedback service in its own uvicorn process (one worker):

1. single `POST /v1/responses` at 64 concurrent connections (auth, Idempotency-Key, validation against
   the survey version, rollup, closed-loop rules and outbox included) next to a minimal endpoint on the
   same stack doing one raw asyncpg INSERT; target ≥ 0.8×.
2. `POST /v1/responses/bulk` (10,000 per call) rows/s next to raw asyncpg COPY of the same rows; target ≥ 0.5×.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import orjson

from bench.env import BenchEnv, summary
from services.common.db import asyncpg_dsn

CONNECTIONS, SINGLE_REQUESTS, WARMUP = 64, 4000, 300
BULK_SIZE, BULK_CALLS = 10_000, 5


async def _load(
    base: str, headers: dict[str, str], url: str, bodies: list[dict[str, Any]], key: bool
) -> tuple[float, list[float]]:
    """Send every body with CONNECTIONS in flight on a fresh client (an idle keep-alive connection that
    uvicorn closed after 5 s would otherwise fail the next request); (requests/s, latencies in ms)."""
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60, limits=limits) as client:
        return await _send_all(client, url, bodies, key)


async def _send_all(
    client: httpx.AsyncClient, url: str, bodies: list[dict[str, Any]], key: bool
) -> tuple[float, list[float]]:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []

    async def worker() -> None:
        while not queue.empty():
            body = queue.get_nowait()
            extra = {"Idempotency-Key": str(uuid.uuid4())} if key else {}
            started = time.perf_counter()
            response = await client.post(
                url, content=orjson.dumps(body), headers={**extra, "content-type": "application/json"}
            )
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 201:
                raise RuntimeError(f"{url}: {response.status_code} {response.text[:300]}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return len(bodies) / (time.perf_counter() - started), latencies


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
        # 1. single POST
        await _load(base, headers, "/v1/responses", _bodies(sid, WARMUP, "warm"), key=True)
        api_rps, api_ms = await _load(base, headers, "/v1/responses", _bodies(sid, SINGLE_REQUESTS, "one"), key=True)
        await _load(ref, {}, "/insert", _bodies(sid, WARMUP, "warm"), key=False)
        raw_rps, raw_ms = await _load(ref, {}, "/insert", _bodies(sid, SINGLE_REQUESTS, "one"), key=False)
        a, r = summary(api_ms), summary(raw_ms)
        print(f"single POST /v1/responses, {CONNECTIONS} connections, {SINGLE_REQUESTS} requests:")
        print(f"  feedback API : {api_rps:8.0f} req/s  p50 {a['p50']:6.1f} ms  p99 {a['p99']:6.1f} ms")
        print(f"  raw INSERT   : {raw_rps:8.0f} req/s  p50 {r['p50']:6.1f} ms  p99 {r['p99']:6.1f} ms")
        print(f"  ratio        : {api_rps / raw_rps:.2f}x (target >= 0.8x)")

        # 2. bulk
        api_rows = 0
        started = time.perf_counter()
        for call in range(BULK_CALLS):
            items = _bodies(sid, BULK_SIZE, f"bulk{call}")
            response = await api.post("/v1/responses/bulk", content=orjson.dumps({"items": items}),
                                      headers={"content-type": "application/json"})  # fmt: skip
            response.raise_for_status()
            api_rows += response.json()["created"]
        bulk_rps = api_rows / (time.perf_counter() - started)

    conn = await asyncpg.connect(asyncpg_dsn(env.database_url(ref_db)))
    try:
        now = datetime.now(UTC)
        copy_rows = 0
        started = time.perf_counter()
        for call in range(BULK_CALLS):
            records = [
                (uuid.uuid4(), "bench", uuid.UUID(sid), b["response_id"], b["customer_external_id"],
                 b["touchpoint_key"], b["channel"], now, orjson.dumps(b["answers"]).decode(), b["comment"],
                 b["answers"]["recommend"], now)
                for b in _bodies(sid, BULK_SIZE, f"copy{call}")
            ]  # fmt: skip
            async with conn.transaction():
                await conn.copy_records_to_table("ref_response", records=records)
            copy_rows += len(records)
        copy_rps = copy_rows / (time.perf_counter() - started)
    finally:
        await conn.close()
    print(f"bulk ingest, {BULK_CALLS} calls x {BULK_SIZE} rows:")
    print(
        f"  POST /v1/responses/bulk : {bulk_rps:9.0f} rows/s (incl. JSON over HTTP, validation, rollup, rules, outbox)"
    )
    print(f"  raw asyncpg COPY        : {copy_rps:9.0f} rows/s (rows built in the client, one transaction per batch)")
    print(f"  ratio                   : {bulk_rps / copy_rps:.2f}x (target >= 0.5x)")
