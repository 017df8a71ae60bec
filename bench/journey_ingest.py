"""Bulk interaction ingest through POST /v1/interactions/bulk (validated, deduped, customers created,
outbox written), over real HTTP to the journey service in its own uvicorn process, next to raw
asyncpg `copy_records_to_table` of the same rows into a scratch table shaped like `interaction`
(same columns and indexes), measured in the same run. Floor 0.25x (before the events contract), goal
>= 0.4x the COPY rate. The journey-analytics consumer applies the events in the same process meanwhile
(customer × touchpoint pairs). Printed apart: the same ingest once the touchpoints sit in a journey's
steps, when that consumer also recomputes the journey's funnel and path rows of the customers, and the
time until it has applied everything."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from statistics import median
from typing import Any

import asyncpg
import httpx
import orjson

from bench.env import BenchEnv, caught_up, until
from services.common.db import asyncpg_dsn

BATCH, BATCHES, CUSTOMERS = 10_000, 10, 20_000
TOUCHPOINTS = [(f"tp-{i}", ["web", "app", "email", "store"][i % 4]) for i in range(20)]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _items(batch: int) -> list[dict[str, Any]]:
    out = []
    for n in range(BATCH):
        i = batch * BATCH + n
        item: dict[str, Any] = {
            "event_id": f"ev-{i}",
            "customer": f"crm-{i % CUSTOMERS}",
            "touchpoint": TOUCHPOINTS[i % len(TOUCHPOINTS)][0],
            "occurred_at": (T0 + timedelta(seconds=i * 7)).isoformat(),
        }
        if i % 5 == 0:
            item["properties"] = {"page": f"/p/{i % 100}"}
        out.append(item)
    return out


_COLUMNS = ["id", "workspace_id", "event_id", "customer_id", "touchpoint_id", "channel", "occurred_at",
            "journey_id", "properties", "recorded_at"]  # fmt: skip


async def main(env: BenchEnv) -> None:
    workspace, database = "bench", "bench_journey_ingest"
    base = await env.serve("services.journey.app:create_app", env_prefix="JOURNEY_", database=database)
    headers = {"Authorization": f"Bearer {env.token(workspace, ['admin'])}", "Content-Type": "application/json"}
    bodies = [orjson.dumps({"items": _items(b)}) for b in range(BATCHES)]  # encoded before the clock starts
    conn = await asyncpg.connect(asyncpg_dsn(env.database_url(database)))
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:
        for key, channel in TOUCHPOINTS:
            (
                await client.post("/v1/touchpoints", json={"key": key, "name": key, "channel": channel})
            ).raise_for_status()
        warm = {"items": [{**i, "event_id": f"warm-{i['event_id']}"} for i in _items(0)[:500]]}
        (await client.post("/v1/interactions/bulk", json=warm)).raise_for_status()
        await conn.execute("DROP TABLE IF EXISTS interaction_scratch")
        await conn.execute("CREATE TABLE interaction_scratch (LIKE interaction INCLUDING ALL)")
        # Each API call is followed by the COPY of the rows it stored (ids, customers resolved) into a
        # scratch table shaped like `interaction`: the two sides alternate, so a slow phase of the
        # machine (these 2 cores are shared) weighs on both alike.
        stored, api_calls, copy_calls = 0, [], []
        for body in bodies:
            t0 = time.perf_counter()
            response = await client.post("/v1/interactions/bulk", content=body)
            response.raise_for_status()
            api_calls.append(time.perf_counter() - t0)
            done = response.json()
            stored += done["counts"]["created"]
            records = [
                tuple(r)
                for r in await conn.fetch(
                    f"SELECT {', '.join(_COLUMNS[:-2])}, properties::text, recorded_at FROM interaction "
                    "WHERE workspace_id = $1 AND event_id = ANY($2::text[])",
                    workspace,
                    [item["key"] for item in done["items"]],
                )
            ]
            t0 = time.perf_counter()
            async with conn.transaction():
                await conn.copy_records_to_table("interaction_scratch", records=records, columns=_COLUMNS)
            copy_calls.append(time.perf_counter() - t0)
        assert stored == BATCH * BATCHES, stored
        replay = time.perf_counter()
        response = await client.post("/v1/interactions/bulk", content=bodies[0])
        replay_seconds = time.perf_counter() - replay
        assert response.json()["counts"]["duplicate"] == BATCH
        # The same touchpoints placed in a journey's steps (not part of the ratio).
        model = {"key": "j", "name": "J", "stages": [{"key": f"s{i}", "name": f"Stage {i}"} for i in range(4)]}
        journey = (await client.post("/v1/journeys", json=model)).json()
        stages = (await client.get(f"/v1/journeys/{journey['id']}/stages")).json()
        touchpoints = (await client.get("/v1/touchpoints", params={"limit": 100})).json()["items"]
        for n, touchpoint in enumerate(touchpoints):
            step = {"stage_id": stages[n % len(stages)]["id"], "touchpoint_id": touchpoint["id"]}
            (await client.post(f"/v1/journeys/{journey['id']}/steps", json=step)).raise_for_status()
        await caught_up(client)

        async def built() -> bool:  # the journey's first build, in the background
            return (await client.get(f"/v1/journeys/{journey['id']}/funnel")).json()["as_of"] is not None

        await until(built)
        in_journey = []
        for b in range(BATCHES, BATCHES + 3):
            body = orjson.dumps({"items": _items(b)})
            t0 = time.perf_counter()
            (await client.post("/v1/interactions/bulk", content=body)).raise_for_status()
            in_journey.append(time.perf_counter() - t0)
        catch_up = await caught_up(client)
    try:
        outbox = await conn.fetchval(
            "SELECT count(*) FROM outbox_event WHERE subject = 'journey.interaction.recorded' AND workspace_id = $1",
            workspace,
        )
        await conn.execute("DROP TABLE interaction_scratch")
    finally:
        await conn.close()
    n = BATCH * BATCHES
    api_rate, copy_rate = n / sum(api_calls), n / sum(copy_calls)
    print(f"{BATCHES} calls x {BATCH:,} interactions ({CUSTOMERS:,} customers created on the way, "
          f"1 in 5 with properties); {outbox} outbox events; API call and COPY alternate")  # fmt: skip
    print(f"{'measure':<62}{'rows/s':>12}")
    label = f"POST /v1/interactions/bulk over HTTP (median call {median(api_calls) * 1000:.0f} ms)"
    print(f"{label:<62}{api_rate:>12,.0f}")
    label = f"raw asyncpg copy_records_to_table, same rows (median {median(copy_calls) * 1000:.0f} ms)"
    print(f"{label:<62}{copy_rate:>12,.0f}")
    print(f"{'replay of a 10,000 batch (all duplicates)':<62}{BATCH / replay_seconds:>12,.0f}")
    label = f"touchpoints in a journey's steps (median call {median(in_journey) * 1000:.0f} ms)"
    print(f"{label:<62}{BATCH / median(in_journey):>12,.0f}")
    ratio = api_rate / copy_rate
    print(f"ratio API/COPY: {ratio:.2f}x (floor 0.25x, goal >= 0.4x): {'goal met' if ratio >= 0.4 else 'goal NOT met'}")
    print(f"the journey's projections had applied those 3 calls {catch_up:.1f} s after the last one returned")
