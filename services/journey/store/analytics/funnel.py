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
from services.journey.store.analytics._scope import event_filter, journey_scope, time_range

_GROUP = {
    Breakdown.none: "SELECT s0.customer_id, NULL::text AS g FROM s0",
    Breakdown.persona: "SELECT s0.customer_id, p.key AS g FROM s0 JOIN customer c ON c.id = s0.customer_id "
    "LEFT JOIN persona p ON p.id = c.persona_id",
    Breakdown.channel: "SELECT s0.customer_id, s0.channel::text AS g FROM s0",
}


def funnel_sql(n_stages: int, *, window_from: WindowFrom, breakdown: Breakdown, filters: str) -> str:
    ctes = [
        """steps AS (
    SELECT DISTINCT st.touchpoint_id, s.position AS k
    FROM journey_step st JOIN stage s ON s.id = st.stage_id
    WHERE st.journey_id = :j AND st.workspace_id = :w)""",
        f"""ev AS MATERIALIZED (
    SELECT i.customer_id, steps.k, i.occurred_at, i.channel
    FROM interaction i JOIN steps ON steps.touchpoint_id = i.touchpoint_id
    WHERE true{filters})""",
        """s0 AS (
    SELECT DISTINCT ON (customer_id) customer_id, occurred_at AS t, NULL::timestamptz AS prev, channel
    FROM ev WHERE k = :k0 ORDER BY customer_id, occurred_at)""",
    ]
    for k in range(1, n_stages):
        start = "f.t" if window_from == WindowFrom.first_stage else "p.t"
        ctes.append(
            f"""s{k} AS (
    SELECT e.customer_id, min(e.occurred_at) AS t, p.t AS prev
    FROM ev e JOIN s{k - 1} p ON p.customer_id = e.customer_id JOIN s0 f ON f.customer_id = e.customer_id
    WHERE e.k = :k{k} AND e.occurred_at >= p.t AND e.occurred_at <= {start} + :window
    GROUP BY e.customer_id, p.t)"""
        )
    ctes.append(f"grp AS ({_GROUP[breakdown]})")
    reached = " UNION ALL ".join(f"SELECT {k} AS k, customer_id, t, prev FROM s{k}" for k in range(n_stages))
    return (
        "WITH "
        + ",\n".join(ctes)
        + f"""
SELECT grp.g, r.k, count(*) AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM r.t - r.prev)) AS median_seconds
FROM ({reached}) r JOIN grp ON grp.customer_id = r.customer_id
GROUP BY grp.g, r.k"""
    )


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
    params.update({f"k{i}": s.position for i, s in enumerate(scope.stages)})
    filters = event_filter("i", since, until, params)
    sql = funnel_sql(len(scope.stages), window_from=window_from, breakdown=breakdown, filters=filters)
    counts: dict[str | None, dict[int, tuple[int, float | None]]] = defaultdict(dict)
    for r in await session.execute(sa.text(sql), params):
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
