"""Batched events: one request's stored items travel in as few events as fit a NATS message."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.outbox import emit_many

# NATS refuses messages over its max_payload (1 MiB by default); 500 items with modest
# properties stay well below it.
CHUNK = 500


async def emit_items(
    session: AsyncSession, *, workspace_id: str, subject: str, items: Sequence[BaseModel | dict[str, Any]]
) -> None:
    """Every item in exactly one event of `subject`, in chunks of CHUNK.

    Items are public models or dicts of the same shape (the ingest path builds dicts: events.py
    documents the payload models); orjson encodes either.
    """
    events: list[tuple[str, BaseModel | dict[str, Any]]] = [
        (
            subject,
            {"items": [i.model_dump(mode="json") if isinstance(i, BaseModel) else i for i in items[n : n + CHUNK]]},
        )
        for n in range(0, len(items), CHUNK)
    ]
    await emit_many(session, workspace_id=workspace_id, events=events)
