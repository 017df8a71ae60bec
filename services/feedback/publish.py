"""Every event of this service goes out twice from the same transaction: to the outbox (NATS) and,
for the workspace's webhook subscriptions that want it, to the delivery table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.outbox import emit_many
from services.feedback.store.webhooks import fan_out


async def publish(
    session: AsyncSession,
    *,
    workspace_id: str,
    events: Sequence[tuple[str, BaseModel | dict[str, Any]]],
) -> None:
    if not events:
        return
    await emit_many(session, workspace_id=workspace_id, events=events)
    await fan_out(session, workspace_id=workspace_id, events=events, now=datetime.now(UTC))


async def publish_one(session: AsyncSession, *, workspace_id: str, type: str, data: BaseModel | dict[str, Any]) -> None:
    await publish(session, workspace_id=workspace_id, events=[(type, data)])
