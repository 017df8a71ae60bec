"""The journey service's own consumers: background work triggered by its own events.

A persona's rules decide which customers it gets, so any created, updated or deleted persona
re-evaluates every customer of the workspace. The durable consumer runs it off the request path,
once per event (inbox dedupe), retried with backoff if it fails.
"""

from __future__ import annotations

from typing import Any

import structlog
from faststream.nats import NatsBroker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common.consumer import add_consumer
from services.common.events import Event
from services.common.settings import ServiceSettings
from services.journey.store import customers

log = structlog.get_logger(__name__)


async def reassign_personas(session: AsyncSession, event: Event[dict[str, Any]]) -> None:
    changed = await customers.reassign_personas(session, workspace_id=event.workspace_id)
    log.info("personas re-evaluated", workspace_id=event.workspace_id, trigger=event.type, changed=changed)


def setup_consumers(
    broker: NatsBroker, sessionmaker: async_sessionmaker[AsyncSession], settings: ServiceSettings
) -> None:
    add_consumer(
        broker,
        name="journey-persona-reassign",
        subject="journey.persona.>",
        handler=reassign_personas,
        sessionmaker=sessionmaker,
        max_attempts=settings.consumer_max_attempts,
    )
