"""The per-customer rollup behind funnel and paths (`customer_journey`, migration 0005).

A funnel or a path set over a journey is an aggregate of per-customer results: the times one
customer reached each stage, the path one customer took. Those per-customer results are kept here,
computed by the very SQL of the raw-event queries (funnel.py, paths.py) restricted to the customers
concerned, so the two sources cannot drift apart:

- the ingest recomputes the rows of the customers whose interactions it stored (`refresh_customers`);
- a change of the journey model (stages, steps, touchpoint keys) bumps `journey.map_version`
  (triggers of migration 0004), which makes the journey's rollup stale; the next read that may use
  the rollup rebuilds it (`ensure_current`), and answers from the events while another transaction
  holds the rebuild.

What the rollup answers: every funnel but a channel breakdown with `since` — under the default
window and no time range from the stage times kept per customer, otherwise from the stage events
kept per customer (`stage_times`) — and every path request: without a time range from the paths
kept per level and collapse mode, with one from the nodes and times kept per level. Other
requests are computed from the interactions.

Concurrency: the journey's `journey_rollup` row is the lock. The ingest takes it (in journey id
order, after its other writes) before recomputing customers, and recomputes in a later statement
whose snapshot includes every ingest committed before it, so two ingests touching one customer
cannot overwrite each other's events with a stale result.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.journey.models import Collapse, PathLevel, WindowFrom
from services.journey.store.analytics import funnel, paths

DEFAULT_WINDOW_HOURS = 720.0  # the funnel endpoint's default window
MAX_PATH = 50  # the longest max_length the paths endpoint accepts
_LINEAR_PLAN = ("enable_nestloop",)  # planner settings turned off for the build statement (_build)

_COLUMNS = [
    "funnel_first_stage",
    "funnel_previous_stage",
    "entry_channel",
    "stage_times",
    "stage_bounds",
    *(f"{level.value}_{part}" for level in PathLevel for part in [*(c.value for c in Collapse), "times"]),
]


def answers(*, since: datetime | None, until: datetime | None, window_hours: float = DEFAULT_WINDOW_HOURS) -> bool:
    """Whether the results kept per customer answer a request with these parameters as they are
    (no time range, the default window); other requests are computed from the kept events."""
    return since is None and until is None and window_hours == DEFAULT_WINDOW_HOURS


def build_sql(n_stages: int, *, some_customers: bool) -> str:
    """Compute and upsert the rollup rows of one journey (`:customers` only, or all of them)."""
    filters = " AND i.workspace_id = :w AND (i.journey_id IS NULL OR i.journey_id = :j)"
    interactions, mine = "interaction i", ""
    if some_customers:
        # Per customer through ix_interaction_customer_time, read once for the three uses: a filter
        # on customer_id alone let the planner read every interaction at the journey's touchpoints
        # (seconds at 1M rows). OFFSET 0 keeps the subquery a per-customer index lookup (not pulled up
        # into a join the planner may turn into a scan of the workspace).
        # The filters are applied inside: on the CTE's scan they made its estimate 1 row, and the
        # joins to the journey's steps nested loops. The ORDER BY (the order of
        # ix_interaction_customer_time) keeps the lookup on that index: for a workspace the statistics
        # did not know yet, the planner skipped through ix_interaction_touchpoint_time instead, all of
        # the workspace's interactions per customer (5-14 s per ingest of 10,000 interactions).
        interactions, filters = "mine i", ""
        mine = """mine AS MATERIALIZED (
    SELECT i.* FROM unnest(CAST(:customers AS uuid[])) AS cs(id) CROSS JOIN LATERAL (
        SELECT workspace_id, customer_id, touchpoint_id, occurred_at, channel, journey_id FROM interaction
        WHERE workspace_id = :w AND customer_id = cs.id AND (journey_id IS NULL OR journey_id = :j)
        ORDER BY workspace_id, customer_id, occurred_at OFFSET 0) i
),"""
    path_columns = []
    for level in PathLevel:
        for collapse in Collapse:
            path_columns.append(f"{level.value}_paths.{collapse.value} AS {level.value}_{collapse.value}")
        path_columns.append(f"{level.value}_paths.times AS {level.value}_times")
    path_ctes = []
    for level in PathLevel:
        # Every node uncut (collapse none) with its time: a time range slices them (paths.py).
        collapses = ", ".join(
            f"{paths.path_sql(c, None if c == Collapse.none else str(MAX_PATH))} AS {c.value}" for c in Collapse
        )
        path_ctes.append(
            f"{paths.nodes_sql(level, f'{level.value}_nodes')},\n"
            f"{paths.events_sql(f'{level.value}_ev', f'{level.value}_nodes', filters, interactions)},\n"
            f"{level.value}_paths AS (SELECT customer_id, {collapses}, {paths.PATH_TIMES} AS times "
            f"FROM {level.value}_ev GROUP BY customer_id)"
        )
    columns, ctes = ", ".join(_COLUMNS), ",\n".join(path_ctes)
    return f"""
WITH {mine}{funnel.STEPS_CTE},
{funnel.events_sql(filters, interactions)},
{funnel.per_customer_sql(n_stages, funnel.ENTRY_CHANNEL, first_stage_times=True)},
funnels AS (
    SELECT * FROM {funnel.stage_times_sql(n_stages, list(WindowFrom), also=", " + funnel.stage_events_sql(n_stages))}
),
{ctes}
INSERT INTO customer_journey AS cj (workspace_id, journey_id, customer_id, {columns})
SELECT :w, :j, f.customer_id, f.funnel_first_stage, f.funnel_previous_stage, f.entry_channel,
       f.stage_times, f.stage_bounds,
       {", ".join(path_columns)}
FROM funnels f JOIN stages_paths USING (customer_id) JOIN touchpoints_paths USING (customer_id)
ON CONFLICT (workspace_id, journey_id, customer_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS)}
"""


async def _build(
    session: AsyncSession, *, workspace_id: str, journey_id: UUID, customers: list[UUID] | None = None
) -> None:
    positions = list(
        await session.scalars(
            sa.text("SELECT position FROM stage WHERE journey_id = :j AND workspace_id = :w ORDER BY position"),
            {"j": journey_id, "w": workspace_id},
        )
    )
    if not positions:
        return  # no stages, no steps: no events count for this journey
    params: dict[str, Any] = {
        "w": workspace_id,
        "j": journey_id,
        "window": timedelta(hours=DEFAULT_WINDOW_HOURS),
        **{f"k{i}": p for i, p in enumerate(positions)},
    }
    if customers is not None:
        params["customers"] = customers
    # Planned from a journey or a workspace the statistics do not know yet (estimated at one step,
    # one customer), the statement joined the per-customer results in nested loops (10,000 ×
    # 10,000 rows); hash joins keep it linear whatever the estimates. The setting returns to its
    # default for the rest of the transaction.
    for setting in _LINEAR_PLAN:
        await session.execute(sa.text(f"SET LOCAL {setting} = off"))
    await session.execute(sa.text(build_sql(len(positions), some_customers=customers is not None)), params)
    for setting in _LINEAR_PLAN:
        await session.execute(sa.text(f"SET LOCAL {setting} TO DEFAULT"))


async def ensure_current(session: AsyncSession, *, workspace_id: str, journey_id: UUID, scope: Any = None) -> bool:
    """True when the journey's rollup is current, rebuilding it first if it is stale and no other
    transaction holds it; False: answer from the events."""
    state = (
        await session.execute(
            sa.text(
                "SELECT j.map_version, r.version FROM journey j LEFT JOIN journey_rollup r ON r.journey_id = j.id "
                "WHERE j.id = :j AND j.workspace_id = :w"
            ),
            {"j": journey_id, "w": workspace_id},
        )
    ).first()
    if state is None:
        return False
    if state.version == state.map_version:
        return True
    await session.execute(
        sa.text(
            "INSERT INTO journey_rollup (journey_id, workspace_id, version) VALUES (:j, :w, -1) "
            "ON CONFLICT (journey_id) DO NOTHING"
        ),
        {"j": journey_id, "w": workspace_id},
    )
    locked = (
        await session.execute(
            sa.text("SELECT version FROM journey_rollup WHERE journey_id = :j FOR UPDATE SKIP LOCKED"),
            {"j": journey_id},
        )
    ).first()
    if locked is None:
        return False  # an ingest or another rebuild holds it: answer from the events meanwhile
    # Read after the lock: the rows are built from the model as it is now or later, so recording
    # this version can only under-state how current they are (a later change makes them stale).
    version = await session.scalar(sa.text("SELECT map_version FROM journey WHERE id = :j"), {"j": journey_id})
    if locked.version == version:
        return True  # rebuilt by another transaction in the meantime
    await session.execute(
        sa.text("DELETE FROM customer_journey WHERE workspace_id = :w AND journey_id = :j"),
        {"w": workspace_id, "j": journey_id},
    )
    await _build(session, workspace_id=workspace_id, journey_id=journey_id)
    await session.execute(
        sa.text("UPDATE journey_rollup SET version = :v, built_at = now() WHERE journey_id = :j"),
        {"v": version, "j": journey_id},
    )
    return True


async def refresh_customers(session: AsyncSession, *, workspace_id: str, touched: Mapping[UUID, Set[UUID]]) -> None:
    """Recompute the rows of the customers who met these touchpoints (touchpoint -> customers), in
    every journey whose rollup is current and places one of the touchpoints in a step."""
    if not touched:
        return
    rows = await session.execute(
        sa.text(
            "SELECT DISTINCT st.journey_id, st.touchpoint_id FROM journey_step st "
            "WHERE st.workspace_id = :w AND st.touchpoint_id = ANY(CAST(:tps AS uuid[]))"
        ),
        {"w": workspace_id, "tps": list(touched)},
    )
    customers: dict[UUID, set[UUID]] = {}
    for r in rows:
        customers.setdefault(r.journey_id, set()).update(touched[r.touchpoint_id])
    if not customers:
        return
    # Every journey concerned is locked, current or not (a missing state row is created stale):
    # a rebuild running now could not see this transaction's interactions, so it must finish
    # before (and this recomputes after it) or start after this commits. Journey id order: no
    # deadlock between ingests.
    journeys = sorted(customers)
    await session.execute(
        sa.text(
            "INSERT INTO journey_rollup (journey_id, workspace_id, version) "
            "SELECT j, :w, -1 FROM unnest(CAST(:js AS uuid[])) j ON CONFLICT (journey_id) DO NOTHING"
        ),
        {"w": workspace_id, "js": journeys},
    )
    await session.execute(
        sa.text(
            "SELECT 1 FROM journey_rollup WHERE journey_id = ANY(CAST(:js AS uuid[])) ORDER BY journey_id FOR UPDATE"
        ),
        {"js": journeys},
    )
    # A new statement, a new snapshot: whatever was committed before the locks were granted.
    current = await session.scalars(
        sa.text(
            "SELECT r.journey_id FROM journey_rollup r JOIN journey j ON j.id = r.journey_id "
            "WHERE r.journey_id = ANY(CAST(:js AS uuid[])) AND j.map_version = r.version ORDER BY r.journey_id"
        ),
        {"js": journeys},
    )
    for journey_id in current.all():
        await _build(session, workspace_id=workspace_id, journey_id=journey_id, customers=sorted(customers[journey_id]))
