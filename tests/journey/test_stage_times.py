"""The funnel's per-customer stage times (`funnel.per_customer_sql` + `funnel.stage_times_sql`, used by
the raw-event funnel and by the rollup) against the definition written out in Python, over
thousands of random customers with ties, repeated touches and events a microsecond apart."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from services.journey.models import WindowFrom
from services.journey.settings import JourneySettings
from services.journey.store.analytics import funnel

T0 = datetime(2026, 3, 1, tzinfo=UTC)
STAGES = 4
POSITIONS = [10, 20, 30, 40]  # stage positions as the journey stores them (k0 .. k3)


def expected(events: dict[int, list[datetime]], mode: WindowFrom, window: timedelta) -> list[datetime | None]:
    """t_0 = the first event at stage 0; t_k = the first event at stage k not before t_{k-1} and
    within the window from t_0 (first_stage) or from t_{k-1} (previous_stage)."""
    first = min(events.get(0, []), default=None)
    times = [first]
    for k in range(1, STAGES):
        previous = times[-1]
        if previous is None or first is None:
            times.append(None)
            continue
        start = first if mode == WindowFrom.first_stage else previous
        times.append(min((e for e in events.get(k, []) if previous <= e <= start + window), default=None))
    return times


@pytest.mark.parametrize("window_seconds", [0, 1, 4, 1000])
async def test_stage_times_match_the_definition(journey_settings: JourneySettings, window_seconds: int) -> None:
    rng = random.Random(window_seconds)
    window = timedelta(seconds=window_seconds)
    customers: dict[int, dict[int, list[datetime]]] = {}
    rows: list[tuple[int, int, datetime]] = []
    for c in range(3000):
        customers[c] = {}
        for _ in range(rng.randrange(0, 9)):
            k = rng.randrange(STAGES)
            # Few distinct seconds, so ties are common; a microsecond off a second tests the edges.
            t = T0 + timedelta(seconds=rng.randrange(6), microseconds=rng.choice([0, 0, 0, 1, 999_999]))
            customers[c].setdefault(k, []).append(t)
            rows.append((c, POSITIONS[k], t))
    engine = create_async_engine(journey_settings.database_url)
    sql = f"""
WITH ev AS (
    SELECT * FROM unnest(CAST(:cs AS int[]), CAST(:ks AS int[]), CAST(:ts AS timestamptz[])) AS ev(customer_id, k, t)
),
{funnel.per_customer_sql(STAGES, "NULL::text")}
SELECT customer_id, funnel_first_stage, funnel_previous_stage FROM {funnel.stage_times_sql(STAGES, list(WindowFrom))}
"""
    params = {
        "cs": [r[0] for r in rows],
        "ks": [r[1] for r in rows],
        "ts": [r[2] for r in rows],
        "window": window,
        **{f"k{i}": p for i, p in enumerate(POSITIONS)},
    }
    try:
        async with engine.connect() as conn:
            got = {r.customer_id: r for r in await conn.execute(sa.text(sql), params)}
    finally:
        await engine.dispose()
    with_events = {c for c, events in customers.items() if events}
    assert set(got) == with_events
    for c in with_events:
        assert got[c].funnel_first_stage == expected(customers[c], WindowFrom.first_stage, window), customers[c]
        assert got[c].funnel_previous_stage == expected(customers[c], WindowFrom.previous_stage, window), customers[c]
