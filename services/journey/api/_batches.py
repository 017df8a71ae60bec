"""Batched events: one request's stored items travel in as few events as fit a NATS message."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.outbox import emit_many
from services.journey.models import CustomersUpserted, InteractionsRecorded, OutcomesRecorded

# NATS refuses messages over its max_payload (1 MiB by default); 500 items with modest
# properties stay well below it.
CHUNK = 500

_PAYLOADS: dict[str, type[CustomersUpserted | InteractionsRecorded | OutcomesRecorded]] = {
    "journey.customer.upserted": CustomersUpserted,
    "journey.interaction.recorded": InteractionsRecorded,
    "journey.outcome.recorded": OutcomesRecorded,
}


async def emit_items(session: AsyncSession, *, workspace_id: str, subject: str, items: Sequence[BaseModel]) -> None:
    """Every item in exactly one event of `subject`, in chunks of CHUNK."""
    payload = _PAYLOADS[subject]
    events: list[tuple[str, BaseModel]] = [
        (subject, payload.model_validate({"items": list(items[i : i + CHUNK])}, from_attributes=True))
        for i in range(0, len(items), CHUNK)
    ]
    await emit_many(session, workspace_id=workspace_id, events=events)
