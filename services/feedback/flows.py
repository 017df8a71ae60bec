"""Write flows that span stores: a response write opens cases and emits events in one transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.feedback.events import CASE_OPENED, RESPONSE_SUBMITTED
from services.feedback.models import ResponseCreate
from services.feedback.publish import publish
from services.feedback.store import loop
from services.feedback.store.responses import Outcome, ingest


async def record_responses(
    session: AsyncSession, *, workspace_id: str, items: list[ResponseCreate], allow_closed: bool = False
) -> Outcome:
    now = datetime.now(UTC)
    outcome = await ingest(session, workspace_id=workspace_id, items=items, allow_closed=allow_closed, now=now)
    if outcome.created:
        rules = [r for r in await loop.active_rules(session, workspace_id=workspace_id) if r.theme is None]
        cases = await loop.open_cases(
            session, workspace_id=workspace_id, responses=outcome.created, rules=rules, now=now
        )
        events: list[tuple[str, BaseModel | dict[str, Any]]] = [(RESPONSE_SUBMITTED, row) for row in outcome.created]
        events += [(CASE_OPENED, case) for case in cases]
        await publish(session, workspace_id=workspace_id, events=events)
    return outcome
