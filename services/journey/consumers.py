"""The journey service's own consumers and background work, both driven by its own events.

- journey-analytics: the journey projections (funnel/paths rows, the customer × touchpoint pairs
  of reach), store/analytics/projection.py; a journey whose structure changed is rebuilt by the
  `RollupBuilder` in the background.
- journey-persona-reassign: a persona's rules decide which customers it gets, so a created,
  updated or deleted persona re-evaluates every customer of the workspace off the request path;
  each customer whose persona changes gets version + 1 and is published in
  `journey.customer.reassigned`. Over a large workspace this runs long: the kit keeps the batch
  alive, and the keyset batches keep memory flat.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common.consumer import Consumer
from services.common.events import Event
from services.common.outbox import batch_changes, emit_many
from services.common.worker import LoopWorker, Worker
from services.journey.events import CUSTOMER_REASSIGNED
from services.journey.store import customers
from services.journey.store.analytics import projection, rollup

log = structlog.get_logger(__name__)


async def reassign_personas(session: AsyncSession, events: list[Event[dict[str, Any]]]) -> None:
    for workspace_id in dict.fromkeys(e.workspace_id for e in events):
        changed = 0
        async for batch in customers.reassign_personas(session, workspace_id=workspace_id):
            await emit_many(session, workspace_id=workspace_id, changes=batch_changes(CUSTOMER_REASSIGNED, batch))
            changed += len(batch)
        log.info("personas re-evaluated", workspace_id=workspace_id, changed=changed)


CONSUMERS = [
    Consumer(
        name=rollup.CONSUMER,
        stream="journey",
        apply=projection.apply,
        types=projection.TYPES,
        reset=projection.RESET,
    ),
    Consumer(
        name="journey-persona-reassign",
        stream="journey",
        apply=reassign_personas,
        types=frozenset({"journey.persona.created", "journey.persona.updated", "journey.persona.deleted"}),
    ),
]


class RollupBuilder(LoopWorker):
    """Rebuilds stale journeys one at a time, each in one transaction; runs in every replica
    (SKIP LOCKED: two replicas never rebuild the same journey)."""

    name = "journey-rollup-builder"

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], *, idle_seconds: float) -> None:
        super().__init__(idle_seconds=idle_seconds)
        self._sessionmaker = sessionmaker

    async def run_once(self) -> bool:
        try:
            async with self._sessionmaker() as session, session.begin():
                return await rollup.rebuild_next(session)
        except rollup.StructureMoved:
            return True  # rolled back: the next attempt sees the new structure


def setup_workers(app: FastAPI) -> Sequence[Worker]:
    sessionmaker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    builder = RollupBuilder(sessionmaker, idle_seconds=app.state.settings.worker_poll_seconds)
    # The consumer's sessions come from this sessionmaker: a commit that made a journey stale wakes it.
    sessionmaker.kw["info"] = {**sessionmaker.kw.get("info", {}), projection.WAKE_BUILDER: builder.wake}
    app.state.rollup_builder = builder
    return [builder]
