"""The journey service's own consumers: background work triggered by its own events.

A persona's rules decide which customers it gets, so any created, updated or deleted persona
re-evaluates every customer of the workspace. The durable consumer runs it off the request path,
once per event (inbox dedupe), retried with backoff if it fails.
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.consumer import Consumer
from services.common.events import Event
from services.journey.store import customers

log = structlog.get_logger(__name__)


async def reassign_personas(session: AsyncSession, events: list[Event[dict[str, Any]]]) -> None:
    for workspace_id in dict.fromkeys(e.workspace_id for e in events):
        changed = await customers.reassign_personas(session, workspace_id=workspace_id)
        log.info("personas re-evaluated", workspace_id=workspace_id, changed=changed)


CONSUMERS = [
    Consumer(
        name="journey-persona-reassign",
        stream="journey",
        apply=reassign_personas,
        types=frozenset({"journey.persona.created", "journey.persona.updated", "journey.persona.deleted"}),
    )
]
