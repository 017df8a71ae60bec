"""The one result shape of every bulk endpoint in every service: a count per status and one result
per item, in the order sent. An invalid item fails alone; the others are stored."""

from __future__ import annotations

import enum
from uuid import UUID

from pydantic import BaseModel, Field


class ItemStatus(enum.StrEnum):
    created = "created"
    updated = "updated"  # an upsert changed a stored object
    stored = "stored"  # an upsert found the stored object already in this state
    duplicate = "duplicate"  # the same id with the same content is stored: acknowledged, not stored again
    conflict = "conflict"  # the same id with different content is stored: the stored one stands
    failed = "failed"  # invalid or refused: see errors


class ItemError(BaseModel):
    field: str = Field(description="Where in the item, dotted (`items.3.occurred_at`), or `item`.")
    message: str


class ItemResult(BaseModel):
    index: int = Field(description="The item's position in the request, from 0.")
    key: str | None = Field(default=None, description="The item's own id (event_id, external_id, response_id).")
    status: ItemStatus
    id: UUID | None = Field(default=None, description="The stored object's id, when one is stored.")
    errors: list[ItemError] | None = None


class BulkResult(BaseModel):
    counts: dict[str, int] = Field(description="Items per status; every status is present.")
    items: list[ItemResult]
