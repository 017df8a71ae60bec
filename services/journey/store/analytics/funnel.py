"""GET /v1/journeys/{id}/funnel: customers reaching each stage in order, in one statement.

A customer enters the funnel with their first event at the first stage in the time range (t0).
They reach stage k at the first event of stage k not before the time they reached stage k-1 and
within the window — counted from t0 (`first_stage`, default) or from stage k-1 (`previous_stage`).
A customer who skips a stage stops there: the funnel is strictly ordered. Events are ordered by
`occurred_at`, so the order of arrival does not matter.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.journey.models import Breakdown, Funnel, FunnelGroup, FunnelStage, WindowFrom
from services.journey.store.analytics import rollup
from services.journey.store.analytics._scope import event_filter, journey_scope, time_range

ENTRY_CHANNEL = "(array_agg(ev.channel ORDER BY ev.t) FILTER (WHERE ev.k = :k0))[1]"
_GROUP = {
    Breakdown.none: ("NULL::text", ""),
    Breakdown.persona: ("p.key", "JOIN customer c ON c.id = r.customer_id LEFT JOIN persona p ON p.id = c.persona_id"),
    Breakdown.channel: ("r.entry_channel", ""),
}


STEPS_CTE = """steps AS (
    SELECT DISTINCT st.touchpoint_id, s.position AS k
    FROM journey_step st JOIN stage s ON s.id = st.stage_id
    WHERE st.journey_id = :j AND st.workspace_id = :w
)"""


def events_sql(filters: str, interactions: str = "interaction i") -> str:
    """The journey's events at its stages: (customer_id, k = stage position, t, channel)."""
    return f"""ev AS (
    SELECT i.customer_id, steps.k, i.occurred_at AS t, i.channel
    FROM {interactions} JOIN steps ON steps.touchpoint_id = i.touchpoint_id
    WHERE true{filters}
)"""


def per_customer_sql(n_stages: int, entry: str) -> str:
    """Per customer: t0 (first event at the first stage) and the times at each further stage."""
    arrays = "".join(f", array_agg(ev.t) FILTER (WHERE ev.k = :k{k}) AS e{k}" for k in range(1, n_stages))
    return f"""per_customer AS (
    SELECT ev.customer_id, min(ev.t) FILTER (WHERE ev.k = :k0) AS t0, {entry} AS entry_channel{arrays}
    FROM ev GROUP BY ev.customer_id
)"""


def reached_sql(n_stages: int, window_from: WindowFrom, alias: str = "l") -> tuple[str, list[str]]:
    """LATERAL joins finding t_k = min(e in E_k, e >= t_{k-1}, within the window) on `per_customer p`;
    returns the joins and the expressions of t_0 .. t_{n-1} (null from the first stage not reached)."""
    laterals, times = [], ["p.t0"]
    for k in range(1, n_stages):
        start = "p.t0" if window_from == WindowFrom.first_stage else f"{times[-1]}"
        laterals.append(
            f"LEFT JOIN LATERAL (SELECT min(x) AS t FROM unnest(p.e{k}) x "
            f"WHERE x >= {times[-1]} AND x <= {start} + :window) {alias}{k} ON true"
        )
        times.append(f"{alias}{k}.t")
    return " ".join(laterals), times


def stage_values_sql(times: list[str]) -> str:
    """(k, t_k, seconds from t_{k-1}) per stage, for a CROSS JOIN LATERAL (VALUES ...)."""
    return ", ".join(
        f"({k}, {t}, {'NULL::float8' if k == 0 else f'extract(epoch FROM {t} - {times[k - 1]})::float8'})"
        for k, t in enumerate(times)
    )


def aggregate_sql(breakdown: Breakdown) -> str:
    group, join = _GROUP[breakdown]
    return f"""
SELECT {group} AS g, r.k, count(*) AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY r.seconds) AS median_seconds
FROM reached r {join}
WHERE r.t IS NOT NULL
GROUP BY 1, r.k
"""


def funnel_sql(n_stages: int, *, window_from: WindowFrom, breakdown: Breakdown, filters: str) -> str:
    """One pass over the journey's events grouped per customer, then each stage from the arrays.

    Grouping once and finding t_k = min(e in E_k, e >= t_{k-1}) in per-customer arrays avoids the
    self-joins of one CTE per stage (whose row estimates led PostgreSQL into nested loops).
    """
    entry = ENTRY_CHANNEL if breakdown == Breakdown.channel else "NULL::text"
    laterals, times = reached_sql(n_stages, window_from)
    return f"""
WITH {STEPS_CTE},
{events_sql(filters)},
{per_customer_sql(n_stages, entry)},
reached AS (
    SELECT p.customer_id, p.entry_channel, v.k, v.t, v.seconds
    FROM per_customer p {laterals}
    CROSS JOIN LATERAL (VALUES {stage_values_sql(times)}) AS v(k, t, seconds)
    WHERE p.t0 IS NOT NULL
)
{aggregate_sql(breakdown)}"""


def rollup_funnel_sql(n_stages: int, *, window_from: WindowFrom, breakdown: Breakdown) -> str:
    """The same figures over the rollup's per-customer stage times (rollup.py), one row per group
    with n0.. (customers per stage) and m1.. (median seconds from the previous stage).

    One aggregate row per group, not one row per customer and stage as above: unnesting 100,000
    customers × stages through a LATERAL VALUES cost ~5x the aggregate itself (measured).
    """
    group, join = _GROUP[breakdown]
    f = f"r.funnel_{window_from.value}"
    counts = ", ".join(f"count({f}[{k + 1}]) AS n{k}" for k in range(n_stages))
    medians = "".join(
        f", percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM {f}[{k + 1}] - {f}[{k}])::float8) AS m{k}"
        for k in range(1, n_stages)
    )
    return f"""
SELECT {group} AS g, {counts}{medians}
FROM customer_journey r {join}
WHERE r.workspace_id = :w AND r.journey_id = :j AND {f}[1] IS NOT NULL
GROUP BY 1
"""


async def journey_funnel(
    session: AsyncSession,
    *,
    workspace_id: str,
    journey_id: Any,
    window_hours: float,
    window_from: WindowFrom,
    since: datetime | None,
    until: datetime | None,
    breakdown: Breakdown,
) -> Funnel:
    scope = await journey_scope(session, workspace_id=workspace_id, journey_id=journey_id)
    since, until = time_range(since, until)
    out = Funnel(
        journey_id=journey_id,
        window_hours=window_hours,
        window_from=window_from,
        since=since,
        until=until,
        breakdown=breakdown,
        groups=[],
    )
    if not scope.stages:
        return out
    params: dict[str, Any] = {"w": workspace_id, "j": journey_id, "window": timedelta(hours=window_hours)}
    if rollup.answers(since=since, until=until, window_hours=window_hours) and await rollup.ensure_current(
        session, workspace_id=workspace_id, journey_id=journey_id, scope=scope
    ):
        out.source = "rollup"
        sql = rollup_funnel_sql(len(scope.stages), window_from=window_from, breakdown=breakdown)
    else:
        params.update({f"k{i}": s.position for i, s in enumerate(scope.stages)})
        filters = event_filter("i", since, until, params)
        sql = funnel_sql(len(scope.stages), window_from=window_from, breakdown=breakdown, filters=filters)
    counts: dict[str | None, dict[int, tuple[int, float | None]]] = defaultdict(dict)
    for r in await session.execute(sa.text(sql), params):
        if out.source == "rollup":
            row = r._mapping
            for k in range(len(scope.stages)):
                counts[r.g][k] = (row[f"n{k}"], row[f"m{k}"] if k else None)
        else:
            counts[r.g][r.k] = (r.n, r.median_seconds)
    if breakdown == Breakdown.none and not counts:
        counts[None] = {}
    for group in sorted(counts, key=lambda g: (g is None, g or "")):
        by_stage = counts[group]
        first = by_stage.get(0, (0, None))[0]
        stages = []
        for k, stage in enumerate(scope.stages):
            n, median = by_stage.get(k, (0, None))
            previous = by_stage.get(k - 1, (0, None))[0] if k else None
            stages.append(
                FunnelStage(
                    stage=stage,
                    customers=n,
                    conversion_from_previous=(n / previous if previous else None) if k else None,
                    conversion_overall=n / first if first else None,
                    drop_off=(previous or 0) - n if k else 0,
                    median_seconds_from_previous=median if k else None,
                )
            )
        out.groups.append(FunnelGroup(group=group, stages=stages))
    return out
