"""Scoring: full recompute of one journey of one workspace with 1,000,000 interactions, 200,000
responses and 200 touchpoints (target ≤ 5 s), next to just loading the same inputs into numpy;
event → `scoring.score.updated` latency at a steady 100 events/s (target p99 ≤ 1 s); the service's
peak memory.

The inputs are the planted journey of bench/scoring_data.py, written straight into the scoring
service's read-model tables (COPY): what is timed is the recompute, not the consumers' ingest. The
latency run publishes `journey.interaction.recorded` events (one new customer's interaction each) to
JetStream as the journey service would, and waits for the score whose counts include each event,
once on the large journey and once on a small one (20 touchpoints, 20,000 customers). The service
refits every 10 s meanwhile (`SCORING_REFIT_SECONDS`), so the refits' load on the 2 cores is in
the measure; the scores between them are refreshed from the tallies.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

import asyncpg
import httpx
import nats
import numpy as np
import orjson

from bench.env import BenchEnv, percentile, until
from bench.scoring_data import Planted, planted_journey
from services.common.db import asyncpg_dsn, create_engine, create_sessionmaker
from services.common.events import encode_event
from services.scoring.inputs import Scope, load_inputs
from services.scoring.recompute import score_journey

WORKSPACE = "bench"
REPEAT = 3
EVENTS_PER_S, LATENCY_SECONDS = 100, 20


async def _store(conn: asyncpg.Connection, planted: Planted, workspace: str) -> None:
    """The planted journey as the consumers would have stored it: structure, customers, facts."""
    inputs = planted.inputs
    journey_id, stage_id = inputs.journey_id, uuid.uuid4()
    await conn.execute(
        "INSERT INTO journey (id, workspace_id, key, name, status, version) VALUES ($1, $2, $3, $3, 'active', 1)",
        journey_id,
        workspace,
        inputs.journey_key,
    )
    await conn.execute(
        "INSERT INTO stage (id, workspace_id, journey_id, key, name, position, version) "
        "VALUES ($1, $2, $3, 'buy', 'Buy', 0, 1)",
        stage_id,
        workspace,
        journey_id,
    )
    tps = inputs.touchpoints
    await conn.copy_records_to_table(
        "touchpoint",
        records=[(t.id, workspace, t.key, t.name, t.channel, t.yearly_cost, "EUR", 1, False) for t in tps],
        columns=["id", "workspace_id", "key", "name", "channel", "yearly_cost", "currency", "version", "deleted"],
    )
    await conn.copy_records_to_table(
        "step",
        records=[
            (uuid.uuid4(), workspace, journey_id, stage_id, t.id, j, t.designed_moment_of_truth, 1, False)
            for j, t in enumerate(tps)
        ],
        columns=["id", "workspace_id", "journey_id", "stage_id", "touchpoint_id", "position", "moment_of_truth",
                 "version", "removed"],
    )  # fmt: skip
    customers = inputs.customers + 1  # the read model's numbers (any distinct int64)
    await conn.copy_records_to_table(
        "customer_ref",
        records=[(workspace, f"b{n}", int(n), 1) for n in customers],
        columns=["workspace_id", "external_id", "n", "version"],
    )
    ids = [t.id for t in tps]
    stamp = lambda s: datetime.fromtimestamp(float(s), UTC)  # noqa: E731
    await conn.copy_records_to_table(
        "interaction",
        records=(
            (uuid.uuid4(), workspace, int(customers[c]), ids[t], None, stamp(w))
            for c, t, w in zip(inputs.touch_customer, inputs.touch_touchpoint, inputs.touch_time, strict=True)
        ),
        columns=["id", "workspace_id", "customer_n", "touchpoint_id", "journey_id", "occurred_at"],
    )
    keys = [t.key for t in tps]
    await conn.copy_records_to_table(
        "response",
        records=(
            (uuid.uuid4(), workspace, int(customers[c]), inputs.journey_key if tp < 0 else None,
             None if tp < 0 else keys[tp], None if nps < 0 else int(nps), None if csat < 0 else int(csat),
             None, stamp(w), 1)
            for c, tp, nps, csat, w in zip(inputs.response_customer, inputs.response_touchpoint,
                                           inputs.response_nps, inputs.response_csat, inputs.response_time,
                                           strict=True)
        ),
        columns=["id", "workspace_id", "customer_n", "journey_key", "touchpoint_key", "nps", "csat", "ces",
                 "submitted_at", "version"],
    )  # fmt: skip
    converted = np.nonzero(~np.isnan(inputs.conversion_time))[0]
    await conn.copy_records_to_table(
        "outcome",
        records=(
            (uuid.uuid4(), workspace, int(customers[c]), "purchase", 480, None, None, stamp(inputs.conversion_time[c]))
            for c in converted
        ),
        columns=["id", "workspace_id", "customer_n", "name", "value", "journey_id", "touchpoint_id", "occurred_at"],
    )
    await conn.execute("ANALYZE")


async def _time_load(dsn: str, planted: Planted, workspace: str) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            loaded = await load_inputs(
                conn,
                workspace_id=workspace,
                journey_id=planted.inputs.journey_id,
                journey_key=planted.inputs.journey_key,
                journey_persona_id=None,
                scope=Scope(),
                conversions=["purchase"],
            )
        elapsed = time.perf_counter() - started
        assert loaded.touch_customer.size == planted.inputs.touch_customer.size
        return elapsed
    finally:
        await conn.close()


def _service_peak_mb(env: BenchEnv) -> float:
    status = Path(f"/proc/{env.procs[-1].pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024


async def _latency(env: BenchEnv, scoring: str, planted: Planted, workspace: str) -> dict[str, float]:
    """Publish one new customer's interaction per event at EVENTS_PER_S; per event, the time until a
    `scoring.score.updated` of the journey counts it."""
    inputs = planted.inputs
    base = inputs.touch_customer.size
    arrivals: list[tuple[float, int]] = []
    nc = await nats.connect(env.nats_url)

    fits: set[str] = set()

    async def on_score(msg: Any) -> None:
        event = orjson.loads(msg.data)
        if event["workspace_id"] == workspace:
            arrivals.append((time.monotonic(), event["data"]["counts"]["interactions"]))
            fits.add(event["data"]["fitted_at"])

    await nc.subscribe("scoring.score.updated", cb=on_score)
    js = nc.jetstream()
    sent: list[float] = []
    started = time.monotonic()
    total = EVENTS_PER_S * LATENCY_SECONDS
    for i in range(total):
        await asyncio.sleep(max(0.0, started + i / EVENTS_PER_S - time.monotonic()))
        event_id = uuid.uuid4()
        item: dict[str, Any] = {"id": str(uuid.uuid4()), "event_id": f"lat-{i}", "customer": f"lat-{workspace}-{i}",
                "customer_id": str(uuid.uuid4()), "touchpoint": inputs.touchpoints[i % inputs.p].key,
                "touchpoint_id": str(inputs.touchpoints[i % inputs.p].id), "channel": "web",
                "occurred_at": datetime.now(UTC).isoformat(), "journey": None, "journey_id": None,
                "properties": {}}  # fmt: skip
        payload = encode_event(
            event_id=event_id,
            type="journey.interaction.recorded",
            workspace_id=workspace,
            occurred_at=datetime.now(UTC),
            data={"items": [item]},
        )
        sent.append(time.monotonic())
        await js.publish("journey.interaction.recorded", payload, headers={"Nats-Msg-Id": str(event_id)})

    async def counted_all() -> bool:
        return any(n >= base + total for _, n in arrivals)

    await until(counted_all, within=300)
    await nc.close()
    latencies = []
    for i, at in enumerate(sent):
        first = min(t for t, n in arrivals if n >= base + i + 1)
        latencies.append((first - at) * 1000)
    return {
        "p50": median(latencies),
        "p99": percentile(latencies, 99),
        "max": max(latencies),
        "scores": len(arrivals),
        "fits": len(fits),
    }


async def main(env: BenchEnv) -> None:
    scoring = await env.serve(
        "services.scoring.app:create_app",
        env_prefix="SCORING_",
        database="bench_scoring",
        extra_env={
            "SCORING_DEBOUNCE_SECONDS": "0.05",
            "SCORING_WORKER_POLL_SECONDS": "0.2",
            "SCORING_REFIT_SECONDS": "10",
        },
    )
    dsn = asyncpg_dsn(env.database_url("bench_scoring"))
    large = planted_journey(customers=200_000, touchpoints=200, ltr_share=0.5, rating_share=0.1, seed=7)
    small = planted_journey(customers=20_000, touchpoints=20, seed=8)
    conn = await asyncpg.connect(dsn)
    try:
        await _store(conn, large, WORKSPACE)
        await _store(conn, small, WORKSPACE + "-small")
    finally:
        await conn.close()
    for name, planted in (("small", small), ("large", large)):
        print(f"{name} journey: {planted.inputs.touch_customer.size:,} interactions, "
              f"{planted.inputs.response_customer.size:,} responses, {planted.inputs.p} touchpoints, "
              f"{planted.inputs.n:,} customers")  # fmt: skip

    engine = create_engine(env.database_url("bench_scoring"))
    sessionmaker = create_sessionmaker(engine)
    print(f"{'measure (median of ' + str(REPEAT) + ')':<52}{'small s':>9}{'large s':>9}{'target':>9}")
    rows: dict[str, list[float]] = {
        "load the inputs into numpy (reference)": [],
        "full recompute: load + score + store": [],
    }
    for planted, workspace in ((small, WORKSPACE + "-small"), (large, WORKSPACE)):
        loads = [await _time_load(dsn, planted, workspace) for _ in range(REPEAT)]
        fulls = []
        for _ in range(REPEAT):
            started = time.perf_counter()
            await score_journey(
                sessionmaker, workspace_id=workspace, journey_id=planted.inputs.journey_id, bootstrap=200
            )
            fulls.append(time.perf_counter() - started)
        rows["load the inputs into numpy (reference)"].append(median(loads))
        rows["full recompute: load + score + store"].append(median(fulls))
    await engine.dispose()
    for label, (small_s, large_s) in rows.items():
        target = "≤ 5" if label.startswith("full") else ""
        print(f"{label:<52}{small_s:>9.2f}{large_s:>9.2f}{target:>9}")
    (load_small, load_large), (full_small, full_large) = rows.values()
    print(f"ratio full / load: small {full_small / load_small:.1f}×, large {full_large / load_large:.1f}×")

    token = env.token(WORKSPACE, ["admin"])
    async with httpx.AsyncClient(base_url=scoring, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        journey = large.inputs.journey_id

        async def latest() -> str | None:
            items = (await c.get(f"/v1/journeys/{journey}/history", params={"limit": 1})).json().get("items")
            return items[0]["snapshot_id"] if items else None

        before = await latest()
        asked = time.perf_counter()
        (await c.post(f"/v1/journeys/{journey}/recompute")).raise_for_status()

        async def stored() -> bool:
            return await latest() not in (None, before)

        await until(stored, within=120)
        print(f"recompute by the service (POST → new snapshot): {time.perf_counter() - asked:.2f} s")
    print(f"peak memory of the scoring service: {_service_peak_mb(env):.0f} MB")

    for name, planted, workspace in (("small", small, WORKSPACE + "-small"), ("large", large, WORKSPACE)):
        result = await _latency(env, scoring, planted, workspace)
        print(f"event → score.updated at {EVENTS_PER_S}/s, {name} journey ({planted.inputs.touch_customer.size:,} "
              f"interactions): p50 {result['p50']:.0f} ms, p99 {result['p99']:.0f} ms (target p99 ≤ 1000), "
              f"max {result['max']:.0f} ms; {result['scores']:.0f} scores published, {result['fits']:.0f} fits "
              "among them")  # fmt: skip
    print(f"peak memory of the scoring service: {_service_peak_mb(env):.0f} MB")
