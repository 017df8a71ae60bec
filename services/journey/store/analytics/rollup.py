"""The per-customer projection behind funnel and paths (`customer_journey`, state in `journey_rollup`).

A funnel or a path set over a journey is an aggregate of per-customer results: the times one
customer reached each stage, the path one customer took. Those per-customer results are kept here,
computed by the very SQL of the raw-event queries (funnel.py, paths.py) restricted to the customers
concerned, so the two sources cannot drift apart. The journey-analytics consumer (projection.py)
keeps them from the service's events; no request writes them.

The rows depend on the journey's structure — its stages (id, key, position) and which touchpoints
sit in which stage, with the touchpoints' keys (`signature_sql`) — and on nothing else of the model
(not names, costs, step positions or flags). Every statement that writes rows checks, in its own
snapshot, that the structure is still the one the journey's rows are built for (`build_sql`'s
guard), so rows of two structures never mix:

- `refresh`: recompute the rows of some customers (the consumer, for the interactions it applies),
  in a journey whose rows are current; when the structure moved under it, the journey is stale;
- `rebuild_next`: rebuild a stale journey (a structural change, or never built) whole, in one
  transaction, in the background; reads answer from the previous rows until it commits.

What the rows answer: every funnel but a channel breakdown with `since` — under the default window
and no time range from the stage times kept per customer, otherwise from the stage events kept per
customer (`stage_times`) — and every path request: without a time range from the paths kept per
level and collapse mode, with one from the nodes and times kept per level. Other requests are
computed from the interactions.

Concurrency: the journey's `journey_rollup` row is the lock. The consumer takes it (journey id
order) before recomputing customers and recomputes in a later statement, whose snapshot includes
every ingest committed before it; the rebuild holds it from before its snapshot to its commit. So
an interaction whose event is applied while a rebuild runs is either in the rebuild's snapshot or
recomputed after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.journey.models import Collapse, PathLevel, StageRef, WindowFrom
from services.journey.store.analytics import funnel, paths

CONSUMER = "journey-analytics"  # the consumer that builds the journey projections (projection.py)
DEFAULT_WINDOW_HOURS = 720.0  # the funnel endpoint's default window
MAX_PATH = 50  # the longest max_length the paths endpoint accepts
_BUILD_SETTINGS = ("enable_nestloop", "jit")  # turned off for the build statement (_build)

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


def signature_sql(journey: str) -> str:
    """SQL: the md5 of what a journey's rows depend on, `journey` an SQL expression of its id: its
    stages (id, key, position) in order, and the distinct (touchpoint, stage, touchpoint key) of
    its steps. Keys hold no space or comma, so the text is unambiguous."""
    return f"""md5(
    coalesce((SELECT string_agg(s.id::text || ' ' || s.key || ' ' || s.position::text, ',' ORDER BY s.position, s.id)
              FROM stage s WHERE s.journey_id = {journey}), '')
    || '|' ||
    coalesce((SELECT string_agg(m, ',' ORDER BY m) FROM (
                  SELECT DISTINCT st.touchpoint_id::text || ' ' || st.stage_id::text || ' ' || t.key AS m
                  FROM journey_step st JOIN touchpoint t ON t.id = st.touchpoint_id WHERE st.journey_id = {journey}
              ) memberships), ''))"""


_STRUCTURE = sa.text(f"""
SELECT {signature_sql("j.id")} AS signature,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('id', s.id, 'key', s.key, 'name', s.name, 'position', s.position)
                                  ORDER BY s.position), '[]') FROM stage s WHERE s.journey_id = j.id) AS stages
FROM journey j WHERE j.id = :j
""")


def build_sql(n_stages: int, *, some_customers: bool) -> str:
    """Compute and upsert the rows of one journey (`:customers` only, or all of them) if its
    structure is the one they are built for (`:signature`); returns whether it was (`ok`)."""
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
        # the workspace's interactions per customer (docs/engineering-notes.md, planner trap).
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
    # The guard reads the structure in the statement's own snapshot: if it is not the expected one,
    # the one-time filter skips the whole computation and nothing is written.
    return f"""
WITH guard AS MATERIALIZED (SELECT {signature_sql(":j")} = :signature AS ok),
{mine}{funnel.STEPS_CTE},
{funnel.events_sql(filters, interactions)},
{funnel.per_customer_sql(n_stages, funnel.ENTRY_CHANNEL, first_stage_times=True)},
funnels AS (
    SELECT * FROM {funnel.stage_times_sql(n_stages, list(WindowFrom), also=", " + funnel.stage_events_sql(n_stages))}
),
{ctes},
written AS (
    INSERT INTO customer_journey AS cj (workspace_id, journey_id, customer_id, {columns})
    SELECT :w, :j, f.customer_id, f.funnel_first_stage, f.funnel_previous_stage, f.entry_channel,
           f.stage_times, f.stage_bounds,
           {", ".join(path_columns)}
    FROM funnels f JOIN stages_paths USING (customer_id) JOIN touchpoints_paths USING (customer_id)
    WHERE (SELECT ok FROM guard)
    ON CONFLICT (workspace_id, journey_id, customer_id) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS)}
)
SELECT ok FROM guard
"""


async def _build(
    session: AsyncSession,
    *,
    workspace_id: str,
    journey_id: UUID,
    signature: str,
    positions: Sequence[int],
    customers: Sequence[UUID | str] | None = None,
) -> bool:
    """Build the journey's rows (of `customers`, or all) for the structure `signature` with stages
    at `positions`; False (nothing written) when the journey's structure is another one now."""
    if not positions:
        return True  # no stages, no steps: no events count for this journey
    params: dict[str, Any] = {
        "w": workspace_id,
        "j": journey_id,
        "signature": signature,
        "window": timedelta(hours=DEFAULT_WINDOW_HOURS),
        **{f"k{i}": p for i, p in enumerate(positions)},
    }
    if customers is not None:
        params["customers"] = list(customers)
    # Planned from a journey or a workspace the statistics do not know yet (estimated at one step,
    # one customer), the statement joined the per-customer results in nested loops (quadratic);
    # hash joins keep it linear whatever the estimates. The nested loop that remains (the
    # per-customer lookups) then costs 1e10, far over jit_above_cost, and JIT compiled the statement
    # for longer than it runs. The settings return to their defaults for the rest of the transaction.
    for setting in _BUILD_SETTINGS:
        await session.execute(sa.text(f"SET LOCAL {setting} = off"))
    ok = await session.scalar(sa.text(build_sql(len(positions), some_customers=customers is not None)), params)
    for setting in _BUILD_SETTINGS:
        await session.execute(sa.text(f"SET LOCAL {setting} TO DEFAULT"))
    return bool(ok)


@dataclass(frozen=True, slots=True)
class Held:
    """A journey's `journey_rollup` row, as its lock holder read it."""

    journey_id: UUID
    workspace_id: str
    version: int
    signature: str | None
    stages: list[dict[str, Any]] | None
    stale_since: datetime | None

    @property
    def current(self) -> bool:
        return self.signature is not None and self.stale_since is None


async def refresh(session: AsyncSession, *, held: Held, customers: Sequence[UUID | str]) -> bool:
    """Recompute these customers' rows of a current journey whose lock the caller holds; False
    (nothing written) when its structure changed since its rows were built: rebuild it."""
    assert held.signature is not None
    assert held.stages is not None
    return await _build(
        session,
        workspace_id=held.workspace_id,
        journey_id=held.journey_id,
        signature=held.signature,
        positions=[s["position"] for s in held.stages],
        customers=sorted(str(c) for c in customers),
    )


class StructureMoved(Exception):
    """The journey's structure changed while it was rebuilt: the rebuild is rolled back and retried."""


_NEXT = sa.text(
    "SELECT journey_id, workspace_id FROM journey_rollup WHERE stale_since IS NOT NULL "
    "ORDER BY stale_since LIMIT 1 FOR UPDATE SKIP LOCKED"
)
_BUILT = sa.text(
    "UPDATE journey_rollup SET signature = :signature, stages = CAST(:stages AS jsonb), built_at = now(), "
    "stale_since = NULL WHERE journey_id = :j"
)


async def rebuild_next(session: AsyncSession) -> bool:
    """Rebuild one stale journey whole in the caller's transaction, which must commit before the
    next call; False when none is waiting (or other transactions hold those). StructureMoved: the
    structure changed during the rebuild; roll back and call again."""
    due = (await session.execute(_NEXT)).first()
    if due is None:
        return False
    structure = (await session.execute(_STRUCTURE, {"j": due.journey_id})).first()
    if structure is None:  # deleted; its event may not have been applied yet
        await forget(session, journeys=[(due.workspace_id, due.journey_id)])
        return True
    await session.execute(
        sa.text("DELETE FROM customer_journey WHERE workspace_id = :w AND journey_id = :j"),
        {"w": due.workspace_id, "j": due.journey_id},
    )
    positions = [s["position"] for s in structure.stages]
    if not await _build(
        session, workspace_id=due.workspace_id, journey_id=due.journey_id, signature=structure.signature,
        positions=positions,
    ):  # fmt: skip
        raise StructureMoved(f"journey {due.journey_id} changed while it was rebuilt")
    stages = orjson.dumps(structure.stages).decode()
    await session.execute(_BUILT, {"j": due.journey_id, "signature": structure.signature, "stages": stages})
    return True


async def forget(session: AsyncSession, *, journeys: Sequence[tuple[str, UUID]]) -> None:
    """Remove the rows and the state of deleted journeys ((workspace_id, journey_id) pairs)."""
    params = {"ws": [w for w, _ in journeys], "js": [j for _, j in journeys]}
    await session.execute(
        sa.text(
            "DELETE FROM customer_journey WHERE (workspace_id, journey_id) IN "
            "(SELECT * FROM unnest(CAST(:ws AS text[]), CAST(:js AS uuid[])))"
        ),
        params,
    )
    await session.execute(sa.text("DELETE FROM journey_rollup WHERE journey_id = ANY(CAST(:js AS uuid[]))"), params)


# Reads ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Projected:
    """What a read answers from: the stages the journey's rows were built with (named as they are
    now; None: never built) and the time they are complete up to."""

    stages: list[StageRef] | None
    as_of: datetime | None


_AS_OF = "(SELECT as_of FROM projection_state WHERE consumer = :consumer AND workspace_id = :w)"
_PROJECTED = sa.text(f"""
SELECT r.signature IS NOT NULL AS built, r.stages, r.stale_since, {_AS_OF} AS as_of
FROM (SELECT 1) one LEFT JOIN journey_rollup r ON r.journey_id = :j AND r.workspace_id = :w
""")


async def consumer_as_of(session: AsyncSession, *, workspace_id: str) -> datetime | None:
    """The time of the last event of the workspace the projections applied."""
    value: datetime | None = await session.scalar(sa.text(_AS_OF), {"consumer": CONSUMER, "w": workspace_id})
    return value


async def projected(
    session: AsyncSession, *, workspace_id: str, journey_id: UUID, current: Sequence[StageRef]
) -> Projected:
    """The state of a journey's rows for a read, which takes them as they are (never builds)."""
    row = (await session.execute(_PROJECTED, {"consumer": CONSUMER, "w": workspace_id, "j": journey_id})).one()
    if not row.built:
        return Projected(None, None)
    names = {str(s.id): s.name for s in current}
    stages = [StageRef.model_validate({**s, "name": names.get(s["id"], s["name"])}) for s in row.stages]
    # Stale: events after the structure changed are not in the rows.
    as_of = row.as_of if row.stale_since is None or row.as_of is None else min(row.as_of, row.stale_since)
    return Projected(stages, as_of)
