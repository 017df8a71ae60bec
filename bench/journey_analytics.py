"""Funnel, paths and reach of one journey over 1,000,000 interactions of 100,000 customers.

The data set is loaded with COPY straight into the journey service's tables (not through the API:
the ingest path is measured by journey_ingest, and 1M interactions of events would take long to
apply). COPY publishes no events, so the projections the journey-analytics consumer keeps from them
are built once here as the service would: the customer × touchpoint pairs (reach) with one INSERT ...
SELECT, and the journey's funnel and path rows by the service's background rebuild (the journey is
marked due one; its time is printed). The journey model (touchpoints, journey, stages, steps) is
created through the API. The three endpoints are then timed over real HTTP against the service in
its own uvicorn process, each next to a plain SQL aggregate over the same rows (asyncpg, prepared)
measured in the same run. Target: each endpoint p50 <= 500 ms. Calls with a time range (a month, and
a range holding every event) read the events the projection keeps per customer.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import httpx
from uuid_utils.compat import uuid7

from bench.env import BenchEnv, summary, until
from services.common.db import asyncpg_dsn

CUSTOMERS, INTERACTIONS, ROUNDS = 100_000, 1_000_000, 15
STAGES = [("need", ["ad", "search", "review"]), ("buy", ["shop", "store", "hotline"]),
          ("use", ["app", "manual", "support"]), ("love", ["community", "referral", "newsletter"])]  # fmt: skip
EXTRA = ["press", "partner"]  # touchpoints in the catalogue but in no step of this journey
CHANNELS = {"ad": "social", "search": "web", "review": "web", "shop": "web", "store": "store", "hotline": "phone",
            "app": "app", "manual": "print", "support": "chat", "community": "social", "referral": "partner",
            "newsletter": "email", "press": "print", "partner": "partner"}  # fmt: skip
T0 = datetime(2026, 1, 1, tzinfo=UTC)

# The plain SQL aggregates the endpoints are compared with: the same rows, the same joins, the same
# time range, the simplest aggregate answering the question (no ordering constraints, no windows).
PLAIN = {
    "funnel": """
SELECT s.position, count(DISTINCT i.customer_id)
FROM interaction i JOIN journey_step st ON st.touchpoint_id = i.touchpoint_id JOIN stage s ON s.id = st.stage_id
WHERE i.workspace_id = $1 AND st.journey_id = $2 AND i.occurred_at >= $3 AND i.occurred_at < $4
GROUP BY s.position""",
    "paths": """
SELECT path, count(*) FROM (
    SELECT i.customer_id, array_agg(s.key ORDER BY i.occurred_at) AS path
    FROM interaction i JOIN journey_step st ON st.touchpoint_id = i.touchpoint_id JOIN stage s ON s.id = st.stage_id
    WHERE i.workspace_id = $1 AND st.journey_id = $2 AND i.occurred_at >= $3 AND i.occurred_at < $4
    GROUP BY i.customer_id) p
GROUP BY path ORDER BY count(*) DESC LIMIT 10""",
    "reach": """
SELECT st.id, count(DISTINCT i.customer_id)
FROM interaction i JOIN journey_step st ON st.touchpoint_id = i.touchpoint_id
WHERE i.workspace_id = $1 AND st.journey_id = $2 AND i.occurred_at >= $3 AND i.occurred_at < $4
GROUP BY st.id""",
}


async def _model(client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    async def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await client.post(url, json=body)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    for key in ("family", "pro"):
        await post("/v1/personas", {"key": key, "name": key})
    touchpoints = {}
    for key, channel in CHANNELS.items():
        touchpoints[key] = (await post("/v1/touchpoints", {"key": key, "name": key, "channel": channel}))["id"]
    journey = await post("/v1/journeys", {"key": "bike", "name": "Bike", "stages": [
        {"key": k, "name": k.title()} for k, _ in STAGES]})  # fmt: skip
    stages = (await client.get(f"/v1/journeys/{journey['id']}/stages")).json()["items"]
    for stage, (_, keys) in zip(stages, STAGES, strict=True):
        for key in keys:
            await post(
                f"/v1/journeys/{journey['id']}/steps", {"stage_id": stage["id"], "touchpoint_id": touchpoints[key]}
            )
    return str(journey["id"]), touchpoints


def _rows(workspace: str, touchpoints: dict[str, str], personas: list[UUID]) -> tuple[list[Any], list[Any]]:
    """Customers progress through the stages with drop-off; events are out of order and repeated."""
    rng = random.Random(7)
    customers, interactions = [], []
    tp_ids = {k: UUID(v) for k, v in touchpoints.items()}
    per_customer = INTERACTIONS // CUSTOMERS
    for c in range(CUSTOMERS):
        cid = uuid7()
        persona = personas[c % 3] if c % 3 < 2 else None
        customers.append((cid, workspace, f"crm-{c}", "{}", "[]", "[]", False, persona, None, T0, T0))
        start = T0 + timedelta(minutes=rng.randrange(90 * 24 * 60))
        reach = rng.choices(range(len(STAGES)), weights=[30, 35, 25, 10])[0]
        for n in range(per_customer):
            if n < 2 and rng.random() < 0.1:
                key = rng.choice(EXTRA)
            else:
                stage = min(reach, n * len(STAGES) // per_customer + rng.choice([-1, 0, 0, 0]))
                key = rng.choice(STAGES[max(0, stage)][1])
            at = start + timedelta(hours=n * rng.uniform(1, 30))
            interactions.append(
                (uuid7(), workspace, f"ev-{c}-{n}", cid, tp_ids[key], CHANNELS[key], at, None, None, at)
            )
    rng.shuffle(interactions)  # arrival order is not time order
    return customers, interactions


async def main(env: BenchEnv) -> None:
    workspace, database = "bench", "bench_journey_analytics"
    base = await env.serve("services.journey.app:create_app", env_prefix="JOURNEY_", database=database)
    headers = {"Authorization": f"Bearer {env.token(workspace, ['admin'])}"}
    conn = await asyncpg.connect(asyncpg_dsn(env.database_url(database)))
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:
        journey_id, touchpoints = await _model(client)
        personas = [r["id"] for r in await conn.fetch("SELECT id FROM persona WHERE workspace_id = $1", workspace)]
        started = time.perf_counter()
        customers, interactions = _rows(workspace, touchpoints, personas)
        await conn.copy_records_to_table("customer", records=customers, columns=[
            "id", "workspace_id", "external_id", "profile", "consents", "channel_preferences", "existing_customer",
            "persona_id", "persona_rule", "created_at", "updated_at"])  # fmt: skip
        await conn.copy_records_to_table("interaction", records=interactions, columns=[
            "id", "workspace_id", "event_id", "customer_id", "touchpoint_id", "channel", "occurred_at",
            "journey_id", "properties", "recorded_at"])  # fmt: skip
        # What the consumer would have built from the events of these rows.
        await conn.execute(
            "INSERT INTO customer_touchpoint (workspace_id, touchpoint_id, customer_id, journey_tag) "
            "SELECT DISTINCT workspace_id, touchpoint_id, customer_id, "
            "COALESCE(journey_id, '00000000-0000-0000-0000-000000000000') FROM interaction"
        )
        await conn.execute("VACUUM ANALYZE customer_touchpoint")
        await conn.execute("VACUUM ANALYZE customer")
        await conn.execute("VACUUM ANALYZE interaction")
        print(f"data set: {len(customers):,} customers, {len(interactions):,} interactions loaded with COPY "
              "directly into the tables (and the customer_touchpoint pairs built from them) in "
              f"{time.perf_counter() - started:.1f} s")  # fmt: skip
        await conn.execute("UPDATE journey_rollup SET stale_since = now() WHERE journey_id = $1", UUID(journey_id))

        async def built() -> bool:
            state = "SELECT stale_since IS NULL FROM journey_rollup WHERE journey_id = $1"
            return bool(await conn.fetchval(state, UUID(journey_id)))

        print(f"the journey's funnel and path rows rebuilt in the background in {await until(built):.1f} s")

        # With a time range: a month (a third of the data) as a dashboard asks, and a range holding
        # every event (the worst case: every customer's events are cut and counted).
        month = {"since": "2026-02-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"}
        everything = {"since": "2025-01-01T00:00:00Z"}
        calls = [
            ("funnel", f"/v1/journeys/{journey_id}/funnel", {}),
            ("funnel", f"/v1/journeys/{journey_id}/funnel", {"breakdown": "persona"}),
            ("paths", f"/v1/journeys/{journey_id}/paths", {}),
            ("paths", f"/v1/journeys/{journey_id}/paths", {"level": "touchpoints", "collapse": "revisits"}),
            ("reach", f"/v1/journeys/{journey_id}/reach", {}),
        ]
        calls += [(name, f"/v1/journeys/{journey_id}/{name}", r) for r in (month, everything) for name in PLAIN]
        print(f"{'measure':<50}{'source':>8}{'first ms':>10}{'p50 ms':>10}{'p99 ms':>10}{'plain SQL p50':>15}"
              f"{'ratio':>8}{'<=500ms':>9}")  # fmt: skip
        for name, url, params in calls:
            t0 = time.perf_counter()
            first = await client.get(url, params=params)
            first.raise_for_status()
            first_ms = (time.perf_counter() - t0) * 1000
            source = first.json().get("source", "-")
            api_ms = []
            for _ in range(ROUNDS):
                t0 = time.perf_counter()
                (await client.get(url, params=params)).raise_for_status()
                api_ms.append((time.perf_counter() - t0) * 1000)
            stmt = await conn.prepare(PLAIN[name])
            since = datetime.fromisoformat(params.get("since", "1900-01-01T00:00:00Z"))
            upto = datetime.fromisoformat(params.get("until", "2100-01-01T00:00:00Z"))
            sql_args = (workspace, UUID(journey_id), since, upto)
            await stmt.fetch(*sql_args)
            sql_ms = []
            for _ in range(ROUNDS):
                t0 = time.perf_counter()
                await stmt.fetch(*sql_args)
                sql_ms.append((time.perf_counter() - t0) * 1000)
            a, s = summary(api_ms), summary(sql_ms)
            shown = {k: v[:10] if k in ("since", "until") else v for k, v in params.items()}
            label = f"GET {name}" + (f" ({', '.join(f'{k}={v}' for k, v in shown.items())})" if params else "")
            print(f"{label:<50}{source:>8}{first_ms:>10.0f}{a['p50']:>10.1f}{a['p99']:>10.1f}{s['p50']:>15.1f}"
                  f"{a['p50'] / s['p50']:>8.2f}{'met' if a['p50'] <= 500 else 'NOT met':>9}")  # fmt: skip
    await conn.close()
