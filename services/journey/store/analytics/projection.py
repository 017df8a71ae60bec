"""The journey-analytics consumer: the journey projections built from the service's own events.

- `journey.interaction.recorded`: the items' customer × touchpoint pairs go into
  `customer_touchpoint` (reach), and the customers' `customer_journey` rows are recomputed in every
  journey whose steps hold those touchpoints and whose rows are current (rollup.py);
- structural events (`journey.journey.*`, `journey.stage.*`, `journey.step.*`, carrying the journey's
  id and version, and `journey.touchpoint.updated`): the journey's structure now is compared with the
  one its rows were built for; a different one marks it stale, and the background builder
  (consumers.py) rebuilds it while reads answer from the previous rows. A rename or a cost change
  leaves the structure as it is: nothing is rebuilt. A deleted journey's rows go.

The version of the last structural event applied is held per journey: an event not above it changes
nothing (a redelivery, or an event overtaken by a later one). Touchpoint events carry the
touchpoint's version, not the journey's: they are compared (an idempotent check) without it.

Everything is set-based per batch: one statement for the pairs, one to find the journeys concerned,
one to lock them (journey id order, so concurrent batches and the builder cannot deadlock), one to
compare structures, and one build per journey whose customers changed. A replay from the start
(`Runner.replay`) empties the projections and marks every journey due a rebuild, then the events
fill `customer_touchpoint` again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.events import Event
from services.common.worker import wake_on_commit
from services.journey.models import UNTAGGED
from services.journey.store.analytics import rollup
from services.journey.store.analytics.rollup import Held, signature_sql

RECORDED = "journey.interaction.recorded"
DELETED = "journey.journey.deleted"
TOUCHPOINT_UPDATED = "journey.touchpoint.updated"
OF_JOURNEY = frozenset(
    {
        "journey.journey.created",
        "journey.journey.updated",
        DELETED,
        "journey.stage.added",
        "journey.stage.updated",
        "journey.stage.removed",
        "journey.step.added",
        "journey.step.updated",
        "journey.step.removed",
    }
)
# The builder's wake-up, in the sessionmaker's `info` (app.py): called after a commit that made a
# journey stale, so the rebuild starts at once in this process (others poll).
WAKE_BUILDER = "journey_rollup_builder"

_PAIRS = sa.text("""
INSERT INTO customer_touchpoint (workspace_id, touchpoint_id, customer_id, journey_tag)
SELECT DISTINCT p.w, p.tp, p.c, p.tag
FROM unnest(CAST(:ws AS text[]), CAST(:tps AS uuid[]), CAST(:cs AS uuid[]), CAST(:tags AS uuid[])) AS p(w, tp, c, tag)
ORDER BY 1, 2, 3, 4
ON CONFLICT DO NOTHING
""")
# Per journey holding the touchpoints met, the customers who met them (an interaction tagged with
# another journey does not count for this one).
_MET_IN = sa.text("""
SELECT st.journey_id, st.workspace_id, array_agg(DISTINCT p.c) AS customers
FROM unnest(CAST(:ws AS text[]), CAST(:tps AS uuid[]), CAST(:cs AS uuid[]), CAST(:tags AS uuid[])) AS p(w, tp, c, tag)
JOIN journey_step st ON st.touchpoint_id = p.tp AND st.workspace_id = p.w
WHERE p.tag = CAST(:untagged AS uuid) OR p.tag = st.journey_id
GROUP BY st.journey_id, st.workspace_id
""")
_HOLDING = sa.text(
    "SELECT DISTINCT journey_id, workspace_id FROM journey_step WHERE touchpoint_id = ANY(CAST(:tps AS uuid[]))"
)
# A journey without state yet (new, or after a replay's reset) is due a build.
_ADD = sa.text("""
INSERT INTO journey_rollup (journey_id, workspace_id, version, stale_since)
SELECT j.id, j.workspace_id, 0, CAST(:at AS timestamptz) FROM journey j
WHERE j.id = ANY(CAST(:js AS uuid[])) ORDER BY j.id
ON CONFLICT (journey_id) DO NOTHING
""")
_LOCK = sa.text("""
SELECT journey_id, workspace_id, version, signature, stages, stale_since FROM journey_rollup
WHERE journey_id = ANY(CAST(:js AS uuid[])) ORDER BY journey_id FOR UPDATE
""")
_COMPARE = sa.text(f"""
UPDATE journey_rollup r SET version = greatest(r.version, u.version),
    stale_since = CASE WHEN r.signature IS DISTINCT FROM {signature_sql("r.journey_id")}
                       THEN coalesce(r.stale_since, u.at) ELSE r.stale_since END
FROM unnest(CAST(:js AS uuid[]), CAST(:versions AS bigint[]), CAST(:ats AS timestamptz[])) AS u(journey_id, version, at)
WHERE r.journey_id = u.journey_id
RETURNING r.journey_id, r.stale_since
""")
_STALE = sa.text(
    "UPDATE journey_rollup SET stale_since = coalesce(stale_since, CAST(:at AS timestamptz)) "
    "WHERE journey_id = ANY(CAST(:js AS uuid[]))"
)


@dataclass
class _Due:
    """What one batch asks of one journey."""

    workspace_id: str
    at: datetime  # the first event concerning it: since when it is stale, if it turns out so
    changes: list[tuple[str, int | None]] = field(default_factory=list)  # structural events: type, version
    customers: list[Any] = field(default_factory=list)  # whose interactions it applies


def _pairs(events: list[Event[dict[str, Any]]]) -> dict[str, list[Any]]:
    """The distinct (workspace, touchpoint, customer, journey tag) of the interactions, as arrays."""
    seen = {
        (e.workspace_id, i["touchpoint_id"], i["customer_id"], i.get("journey_id") or str(UNTAGGED))
        for e in events
        if e.type == RECORDED
        for i in e.data["items"]
    }
    return {name: [p[n] for p in seen] for n, name in enumerate(("ws", "tps", "cs", "tags"))}


async def _due(
    session: AsyncSession, events: list[Event[dict[str, Any]]], pairs: dict[str, list[Any]]
) -> dict[UUID, _Due]:
    due: dict[UUID, _Due] = {}
    first = events[0].occurred_at
    if pairs["ws"]:
        for r in await session.execute(_MET_IN, {**pairs, "untagged": UNTAGGED}):
            due.setdefault(r.journey_id, _Due(r.workspace_id, first)).customers = r.customers
    touchpoints = [e for e in events if e.type == TOUCHPOINT_UPDATED]
    if touchpoints:
        for r in await session.execute(_HOLDING, {"tps": [e.aggregate_id or e.data["id"] for e in touchpoints]}):
            due.setdefault(r.journey_id, _Due(r.workspace_id, first)).changes.append((TOUCHPOINT_UPDATED, None))
    for e in events:
        if e.type in OF_JOURNEY:
            journey_id = UUID(e.aggregate_id or _journey_of(e.data))
            entry = due.setdefault(journey_id, _Due(e.workspace_id, e.occurred_at))
            entry.at = min(entry.at, e.occurred_at)
            entry.changes.append((e.type, e.version))
    return due


def _journey_of(data: dict[str, Any]) -> str:
    """The journey of a structural event without an aggregate id (published before versions)."""
    return str(data.get("journey_id") or data.get("journey", {}).get("id") or data["id"])


async def apply(session: AsyncSession, events: list[Event[dict[str, Any]]]) -> None:
    pairs = _pairs(events)
    if pairs["ws"]:
        await session.execute(_PAIRS, pairs)
    due = await _due(session, events, pairs)
    if not due:
        return
    journeys = sorted(due)
    await session.execute(_ADD, {"js": journeys, "at": min(d.at for d in due.values())})
    held = {
        r.journey_id: Held(r.journey_id, r.workspace_id, r.version, r.signature, r.stages, r.stale_since)
        for r in await session.execute(_LOCK, {"js": journeys})
    }
    deleted: list[tuple[str, UUID]] = []
    compare: dict[UUID, tuple[int | None, datetime]] = {}
    for journey_id, d in due.items():
        state = held.get(journey_id)
        # Not above the version held: a redelivery, or overtaken by an event already applied.
        kept = [(t, v) for t, v in d.changes if v is None or state is None or v > state.version]
        if any(t == DELETED for t, _ in kept):
            deleted.append((d.workspace_id, journey_id))
        elif kept and state is not None:
            compare[journey_id] = (max((v for _, v in kept if v is not None), default=None), d.at)
    if deleted:
        await rollup.forget(session, journeys=deleted)
    stale: set[UUID] = set()
    if compare:
        rows = await session.execute(
            _COMPARE,
            {
                "js": list(compare),
                "versions": [v for v, _ in compare.values()],
                "ats": [t for _, t in compare.values()],
            },
        )
        stale |= {r.journey_id for r in rows if r.stale_since is not None}
    skip = stale | {j for _, j in deleted}
    moved = []
    for journey_id in journeys:
        state, customers = held.get(journey_id), due[journey_id].customers
        if not customers or state is None or not state.current or journey_id in skip:
            continue  # stale or never built: its rebuild reads every interaction
        if not await rollup.refresh(session, held=state, customers=customers):
            moved.append(journey_id)  # its structure changed before its event arrived
    if moved:
        await session.execute(_STALE, {"js": moved, "at": min(due[j].at for j in moved)})
    if stale or moved or any(h.stale_since is not None for h in held.values()):
        wake_on_commit(session, WAKE_BUILDER)


# A replay first waits for a running rebuild (it holds its journey's state row), then deletes the
# rows it wrote; every journey is then due a rebuild, and the events fill the pairs again.
RESET = (
    "DELETE FROM journey_rollup",
    "DELETE FROM customer_journey",
    "DELETE FROM customer_touchpoint",
    "INSERT INTO journey_rollup (journey_id, workspace_id, version, stale_since) "
    "SELECT id, workspace_id, 0, now() FROM journey",
)
TYPES = frozenset({RECORDED, TOUCHPOINT_UPDATED, *OF_JOURNEY})
