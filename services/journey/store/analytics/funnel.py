"""GET /v1/journeys/{id}/funnel: customers reaching each stage in order, in one statement.

A customer enters the funnel with their first event at the first stage in the time range (t0).
They reach stage k at the first event of stage k not before the time they reached stage k-1 and
within the window — counted from t0 (`first_stage`, default) or from stage k-1 (`previous_stage`).
A customer who skips a stage stops there: the funnel is strictly ordered. Events are ordered by
`occurred_at`, so the order of arrival does not matter.

Three sources, one computation (`stage_times_sql` over per-customer sorted stage events, then
`counts_sql`): the projection's stage times (default window, no range), the projection's stage
events (any other window and range), or the interactions themselves (a channel breakdown with
`since`, or `source=events`). The projection is read as it is (rollup.py: complete up to `as_of`,
labelled with the stages it was built with); a read never builds it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.journey.models import Breakdown, Funnel, FunnelGroup, FunnelStage, SourceChoice, WindowFrom
from services.journey.store.analytics import rollup
from services.journey.store.analytics._scope import bind_range, count_before, event_filter, journey_scope, time_range

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


def per_customer_sql(n_stages: int, entry: str, *, first_stage_times: bool = False) -> str:
    """Per customer: t0 (first event at the first stage) and the times at each further stage, sorted
    (e1 ..; e0 too with `first_stage_times`)."""
    arrays = "".join(
        f", array_agg(ev.t ORDER BY ev.t) FILTER (WHERE ev.k = :k{k}) AS e{k}"
        for k in range(0 if first_stage_times else 1, n_stages)
    )
    return f"""per_customer AS (
    SELECT ev.customer_id, min(ev.t) FILTER (WHERE ev.k = :k0) AS t0, {entry} AS entry_channel{arrays}
    FROM ev GROUP BY ev.customer_id
)"""


def stage_events_sql(n_stages: int) -> str:
    """The rollup's `stage_times, stage_bounds` from `per_customer` with every stage's times (e0 ..)."""
    counts = [f"coalesce(cardinality(e{k}), 0)" for k in range(n_stages)]
    times = " || ".join(f"coalesce(e{k}, '{{}}'::timestamptz[])" for k in range(n_stages))
    bounds = ["0", *(" + ".join(counts[: k + 1]) for k in range(n_stages))]
    return f"{times} AS stage_times, ARRAY[{', '.join(bounds)}]::int[] AS stage_bounds"


def rollup_events_sql(n_stages: int, *, since: bool, until: bool) -> str:
    """A subquery shaped like `per_customer` (customer_id, entry_channel, t0, e1 ..) over the rollup's
    stage events: stage k's events cut at :until (when set), t0 the first stage-0 event at or after
    :since (when set). Later stages need no cut at :since: t_k >= t_{k-1} >= t0 >= since."""
    # Parenthesised: a[i:j][k:l] would be a slice of a 2-dimensional array (empty here).
    events = [f"(r.stage_times[r.stage_bounds[{k + 1}] + 1 : r.stage_bounds[{k + 2}]])" for k in range(n_stages)]
    if until:
        events = [f"({e}[1 : {count_before('CAST(:until AS timestamptz)', e)}])" for e in events]
    columns = ", ".join(f"{e} AS e{k}" for k, e in enumerate(events))
    # Stage 0's first and last times are plain subscripts: customers without a stage-0 event in the
    # range are left out before any slicing, the costly part.
    where = "r.stage_bounds[2] > 0"
    if since:
        where += " AND r.stage_times[r.stage_bounds[2]] >= :since"
    if until:
        where += " AND r.stage_times[1] < :until"
    sliced = f"""(SELECT r.customer_id, r.entry_channel, {columns} FROM customer_journey r
      WHERE r.workspace_id = :w AND r.journey_id = :j AND {where} OFFSET 0)"""
    first = f"c.e0[{count_before('CAST(:since AS timestamptz)', 'c.e0')} + 1]" if since else "c.e0[1]"
    rest = "".join(f", c.e{k}" for k in range(1, n_stages))
    return f"(SELECT c.customer_id, c.entry_channel, {first} AS t0{rest} FROM {sliced} c OFFSET 0)"


def stage_times_sql(n_stages: int, modes: Sequence[WindowFrom], source: str = "per_customer", also: str = "") -> str:
    """A FROM item over `source` (per customer: customer_id, entry_channel, t0, sorted e1 ..):
    customer_id, entry_channel, t0, the columns `also` and, per window mode, the array
    `funnel_<mode>` of t_0 .. t_{n-1}, where t_k = min(e in E_k, e >= t_{k-1}, within the window)
    (null from the first stage not reached).

    E_k is sorted, so t_k is a binary search (`count_before`), not a LATERAL min() over the unnested
    array (several times slower: docs/engineering-notes.md). One level per stage (OFFSET 0 keeps
    each a level: flattened, t_k would inline t_{k-1}'s expression, and so on down).
    """
    for k in range(1, n_stages):
        columns = []
        for mode in modes:
            previous = "t0" if k == 1 else f"{mode.value}_{k - 1}"
            start = "t0" if mode == WindowFrom.first_stage else previous
            first_after = f"e{k}[{count_before(previous, f'e{k}')} + 1]"
            columns.append(f"CASE WHEN {first_after} <= {start} + :window THEN {first_after} END AS {mode.value}_{k}")
        source = f"(SELECT s{k}.*, {', '.join(columns)} FROM {source} s{k} OFFSET 0)"
    arrays = ", ".join(
        f"ARRAY[t0{''.join(f', {mode.value}_{k}' for k in range(1, n_stages))}]::timestamptz[] AS funnel_{mode.value}"
        for mode in modes
    )
    return f"(SELECT customer_id, entry_channel, t0, {arrays}{also} FROM {source} s) AS times"


def counts_sql(n_stages: int, times: str, *, breakdown: Breakdown, source: str, where: str) -> str:
    """One aggregate row per group over per-customer stage times (`times`, an array t_0 .. t_{n-1}
    with nulls from the first stage not reached): n0.. customers per stage, m1.. median seconds
    from the previous stage.

    One row per group, not one row per customer and stage: unnesting customers × stages through a
    LATERAL VALUES and grouping by stage cost several times the aggregate itself.
    """
    group, join = _GROUP[breakdown]
    counts = ", ".join(f"count({times}[{k + 1}]) AS n{k}" for k in range(n_stages))
    medians = "".join(
        f", percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM {times}[{k + 1}] - {times}[{k}])::float8)"
        f" AS m{k}"
        for k in range(1, n_stages)
    )
    return f"""
SELECT {group} AS g, {counts}{medians}
FROM {source} r {join}
WHERE {where}
GROUP BY 1
"""


def funnel_sql(n_stages: int, *, window_from: WindowFrom, breakdown: Breakdown, filters: str) -> str:
    """One pass over the journey's events grouped per customer, then each stage from the arrays.

    Grouping once and finding t_k = min(e in E_k, e >= t_{k-1}) in per-customer arrays avoids the
    self-joins of one CTE per stage (whose row estimates led PostgreSQL into nested loops).
    """
    entry = ENTRY_CHANNEL if breakdown == Breakdown.channel else "NULL::text"
    return f"""
WITH {STEPS_CTE},
{events_sql(filters)},
{per_customer_sql(n_stages, entry)},
{_reached_counts_sql(n_stages, window_from, breakdown, "per_customer")}"""


def _reached_counts_sql(n_stages: int, window_from: WindowFrom, breakdown: Breakdown, source: str) -> str:
    """The `reached` CTE (stage times of the customers who entered) over `source`, and the counts."""
    return f"""reached AS (SELECT * FROM {stage_times_sql(n_stages, [window_from], source)} WHERE t0 IS NOT NULL)
{counts_sql(n_stages, f"r.funnel_{window_from.value}", breakdown=breakdown, source="reached", where="true")}"""


def rollup_funnel_sql(n_stages: int, *, window_from: WindowFrom, breakdown: Breakdown) -> str:
    """The same figures over the projection's per-customer stage times under the default window and
    no time range (rollup.py)."""
    times = f"r.funnel_{window_from.value}"
    where = f"r.workspace_id = :w AND r.journey_id = :j AND {times}[1] IS NOT NULL"
    return counts_sql(n_stages, times, breakdown=breakdown, source="customer_journey", where=where)


def rollup_events_funnel_sql(
    n_stages: int, *, window_from: WindowFrom, breakdown: Breakdown, since: bool, until: bool
) -> str:
    """The same figures for any window and time range over the projection's per-customer stage
    events: one row per customer instead of every interaction, no sort of the events."""
    source = rollup_events_sql(n_stages, since=since, until=until)
    return f"WITH {_reached_counts_sql(n_stages, window_from, breakdown, source)}"


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
    source: SourceChoice = SourceChoice.auto,
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
    params: dict[str, Any] = {"w": workspace_id, "j": journey_id, "window": timedelta(hours=window_hours)}
    # The projection keeps every customer's stage events, so it answers any window and range; only
    # the entry channel it keeps is the all-time one, which a range starting later may not have.
    sql: str | None = None
    if source == SourceChoice.auto and not (breakdown == Breakdown.channel and since is not None):
        projected = await rollup.projected(
            session, workspace_id=workspace_id, journey_id=journey_id, current=scope.stages
        )
        out.source, out.as_of = "projection", projected.as_of
        stages = projected.stages if projected.stages is not None else scope.stages
        if not projected.stages:
            pass  # never built: every count is zero (as_of null)
        elif rollup.answers(since=since, until=until, window_hours=window_hours):
            sql = rollup_funnel_sql(len(stages), window_from=window_from, breakdown=breakdown)
        else:
            bind_range(params, since, until)
            sql = rollup_events_funnel_sql(
                len(stages),
                window_from=window_from,
                breakdown=breakdown,
                since=since is not None,
                until=until is not None,
            )
    else:
        stages, out.as_of = scope.stages, datetime.now(UTC)
        if stages:
            params.update({f"k{i}": s.position for i, s in enumerate(stages)})
            filters = event_filter("i", since, until, params)
            sql = funnel_sql(len(stages), window_from=window_from, breakdown=breakdown, filters=filters)
    if not stages:
        return out
    counts: dict[str | None, dict[int, tuple[int, float | None]]] = defaultdict(dict)
    for r in (await session.execute(sa.text(sql), params)).all() if sql is not None else []:
        row = r._mapping
        for k in range(len(stages)):
            counts[r.g][k] = (row[f"n{k}"], row[f"m{k}"] if k else None)
    if breakdown == Breakdown.none and not counts:
        counts[None] = {}
    for group in sorted(counts, key=lambda g: (g is None, g or "")):
        by_stage = counts[group]
        first = by_stage.get(0, (0, None))[0]
        reached = []
        for k, stage in enumerate(stages):
            n, median = by_stage.get(k, (0, None))
            previous = by_stage.get(k - 1, (0, None))[0] if k else None
            reached.append(
                FunnelStage(
                    stage=stage,
                    customers=n,
                    conversion_from_previous=(n / previous if previous else None) if k else None,
                    conversion_overall=n / first if first else None,
                    drop_off=(previous or 0) - n if k else 0,
                    median_seconds_from_previous=median if k else None,
                )
            )
        out.groups.append(FunnelGroup(group=group, stages=reached))
    return out
