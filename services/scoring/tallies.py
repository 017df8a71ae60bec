"""The stored tallies (`score_tally`, one per scope): kept by the read model's consumers, counted
from the facts by the recompute worker where one is missing, read by the refresh.

- **Kept.** A batch of facts names its customers and the journeys it can change. `follow` locks
  those journeys' tallies and takes the named customers' tallies before the batch is applied;
  `Following.close` takes them again after it and adds the difference. The row lock serialises two
  consumers changing one journey; each reads the other's committed facts once it holds the lock.
- **Dropped.** A structural change (touchpoints, stages, steps, the journey's persona), or new
  settings (what counts as a conversion), deletes the journey's tallies: their numbers no longer
  mean the same.
- **Counted.** The worker counts a missing tally from every fact while it holds its workspace
  exclusively: no fact can commit meanwhile, so the count and the deltas that follow it meet
  exactly. It holds the workspace for one load of the scope's facts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.db import driver_connection
from services.scoring.inputs import Scope, load_inputs
from services.scoring.tally import Tally, tally_of

# Facts hold their workspace shared, structural changes and counting exclusively (see readmodel.py).
HOLD_SHARED = text("SELECT pg_advisory_xact_lock_shared(8003, hashtext(:w))")
HOLD_EXCLUSIVE = text("SELECT pg_advisory_xact_lock(8003, hashtext(:w))")

# A scope with what loading its inputs needs (its journey's key and persona): `_tally` takes these rows.
_SCOPE_COLUMNS = (
    "s.id AS scope_id, s.journey_id, s.persona_id, s.since, s.until, j.key, j.persona_id AS journey_persona_id"
)
_LOCK = text(
    f"SELECT {_SCOPE_COLUMNS}, t.touchpoints, t.counts FROM score_tally t JOIN score_scope s ON s.id = t.scope_id "
    "JOIN journey j ON j.id = t.journey_id AND j.workspace_id = t.workspace_id "
    "WHERE t.workspace_id = :w AND t.journey_id = ANY(CAST(:js AS uuid[])) ORDER BY t.scope_id FOR UPDATE OF t"
)
_UNCOUNTED = text(
    f"SELECT {_SCOPE_COLUMNS} FROM score_scope s JOIN journey j ON j.id = s.journey_id "
    "AND j.workspace_id = s.workspace_id AND NOT j.deleted LEFT JOIN score_tally t ON t.scope_id = s.id "
    "WHERE s.workspace_id = :w AND s.journey_id = :j AND t.scope_id IS NULL ORDER BY s.id"
)
_SAVE = text("UPDATE score_tally SET counts = :counts, updated_at = now() WHERE scope_id = :s")
_FORGET = text("DELETE FROM score_tally WHERE scope_id = :s")
_DROP = text("DELETE FROM score_tally WHERE workspace_id = :w AND journey_id = ANY(CAST(:js AS uuid[]))")
_DROP_WORKSPACE = text("DELETE FROM score_tally WHERE workspace_id = :w")
_READ = text("SELECT scope_id, touchpoints, counts FROM score_tally WHERE workspace_id = :w AND journey_id = :j")
_COUNT = text(
    "INSERT INTO score_tally (scope_id, workspace_id, journey_id, touchpoints, counts) VALUES (:s, :w, :j, :tps, "
    ":counts) ON CONFLICT (scope_id) DO UPDATE SET touchpoints = EXCLUDED.touchpoints, counts = EXCLUDED.counts, "
    "updated_at = now()"
)
_CUSTOMER_NUMBERS = text(
    "SELECT DISTINCT ('x' || substr(md5(CAST(:w AS text) || ':' || k), 1, 16))::bit(64)::bigint "
    "FROM unnest(CAST(:keys AS text[])) k"
)  # the numbering of readmodel._CUSTOMER_N, for customers not numbered yet too


async def _tally(
    conn: asyncpg.Connection, workspace_id: str, row: Any, conversions: list[str], customers: list[int] | None
) -> tuple[list[UUID], Tally]:
    inputs = await load_inputs(
        conn,
        workspace_id=workspace_id,
        journey_id=row.journey_id,
        journey_key=row.key,
        journey_persona_id=row.journey_persona_id,
        scope=Scope(row.persona_id, row.since, row.until),
        conversions=conversions,
        customers=customers,
    )
    return [t.id for t in inputs.touchpoints], tally_of(inputs)


@dataclass(slots=True)
class Following:
    """The locked tallies of a batch's journeys and its customers' part of them before the batch."""

    workspace_id: str
    customers: list[int]
    conversions: list[str]
    rows: list[Any]
    before: list[Tally]

    async def close(self, session: AsyncSession) -> None:
        """After the batch is applied: add the difference it made to each tally."""
        conn = await driver_connection(session)
        for row, before in zip(self.rows, self.before, strict=True):
            basis, after = await _tally(conn, self.workspace_id, row, self.conversions, self.customers)
            if basis != list(row.touchpoints):  # cannot happen under the shared lock; counted again if it does
                await forget(session, scope_id=row.scope_id)
                continue
            counts = Tally.from_vector(row.counts, len(basis)) + (after - before)
            await session.execute(_SAVE, {"s": row.scope_id, "counts": counts.to_vector()})


async def follow(
    session: AsyncSession,
    *,
    workspace_id: str,
    journey_ids: Iterable[UUID | str],
    customer_keys: Sequence[str],
    conversions: Callable[[], Awaitable[list[str]]],
) -> Following | None:
    """Lock the journeys' tallies and take the customers' part of them, before the batch is applied
    (None: nothing to keep). `conversions` reads the workspace's conversion outcomes, only when
    there are tallies to keep."""
    journeys = sorted({str(j) for j in journey_ids})
    if not journeys or not customer_keys:
        return None
    rows = list(await session.execute(_LOCK, {"w": workspace_id, "js": journeys}))
    if not rows:
        return None
    keys = sorted(set(customer_keys))
    customers = list((await session.execute(_CUSTOMER_NUMBERS, {"w": workspace_id, "keys": keys})).scalars())
    named = await conversions()
    conn = await driver_connection(session)
    kept, before = [], []
    for row in rows:
        basis, tally = await _tally(conn, workspace_id, row, named, customers)
        if basis != list(row.touchpoints):
            await forget(session, scope_id=row.scope_id)
            continue
        kept.append(row)
        before.append(tally)
    return Following(workspace_id, customers, named, kept, before)


async def forget(session: AsyncSession, *, scope_id: UUID) -> None:
    await session.execute(_FORGET, {"s": scope_id})


async def drop(session: AsyncSession, *, workspace_id: str, journey_ids: Iterable[UUID | str]) -> None:
    journeys = sorted({str(j) for j in journey_ids})
    if journeys:
        await session.execute(_DROP, {"w": workspace_id, "js": journeys})


async def drop_workspace(session: AsyncSession, *, workspace_id: str) -> None:
    """New settings: every tally of the workspace is counted again (held exclusively, so a count
    running with the old settings commits before, and is dropped)."""
    await session.execute(HOLD_EXCLUSIVE, {"w": workspace_id})
    await session.execute(_DROP_WORKSPACE, {"w": workspace_id})


async def read(session: AsyncSession, *, workspace_id: str, journey_id: UUID) -> dict[UUID, tuple[list[UUID], Tally]]:
    """Scope id -> (touchpoints, tally) of the journey's counted scopes."""
    return {
        row.scope_id: (list(row.touchpoints), Tally.from_vector(row.counts, len(row.touchpoints)))
        for row in await session.execute(_READ, {"w": workspace_id, "j": journey_id})
    }


async def uncounted(session: AsyncSession, *, workspace_id: str, journey_id: UUID) -> list[Any]:
    """The journey's scopes without a tally (none when the journey is deleted)."""
    return list(await session.execute(_UNCOUNTED, {"w": workspace_id, "j": journey_id}))


async def count(session: AsyncSession, *, workspace_id: str, scopes: Sequence[Any], conversions: list[str]) -> None:
    """Count the tallies of these scopes (`uncounted` rows) from every fact (the worker, where they are
    missing). The caller's transaction must hold the workspace exclusively (`HOLD_EXCLUSIVE`), taken
    before `uncounted` reads them."""
    conn = await driver_connection(session)
    for scope in scopes:
        basis, tally = await _tally(conn, workspace_id, scope, conversions, None)
        params = {"s": scope.scope_id, "w": workspace_id, "j": scope.journey_id, "tps": basis}
        await session.execute(_COUNT, {**params, "counts": tally.to_vector()})
