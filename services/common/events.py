"""The event envelope every service publishes, and the JetStream streams that carry events.

Subjects are `<service>.<noun>.<verb-past>`; one stream per publishing service keeps every event
(no max age by default) so a read model can be rebuilt by replaying from the start.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar
from uuid import UUID

import orjson
from pydantic import BaseModel, Field

DataT = TypeVar("DataT")

# One stream per publishing service: name -> subjects.
STREAMS: dict[str, list[str]] = {
    "JOURNEY": ["journey.>"],
    "FEEDBACK": ["feedback.>"],
    "SCORING": ["scoring.>"],
}
DUPLICATE_WINDOW_SECONDS = 15 * 60


class Event(BaseModel, Generic[DataT]):
    """Envelope of every event. `id` is also the `Nats-Msg-Id`: consumers dedupe on it."""

    id: UUID
    type: str = Field(description="The NATS subject, e.g. journey.journey.created.")
    workspace_id: str
    occurred_at: datetime
    data: DataT


def _json_default(value: Any) -> Any:
    # orjson knows uuid.UUID but not asyncpg's own UUID type (raw fetches) nor Decimal (money).
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "bytes") and type(value).__name__ == "UUID":
        return str(UUID(bytes=value.bytes))
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode_event(*, event_id: UUID | str, type: str, workspace_id: str, occurred_at: datetime, data: Any) -> bytes:
    return orjson.dumps(
        {
            "id": event_id,
            "type": type,
            "workspace_id": workspace_id,
            "occurred_at": occurred_at,
            "data": data.model_dump(mode="json") if isinstance(data, BaseModel) else data,
        },
        default=_json_default,
    )


def decode_event(payload: bytes) -> Event[dict[str, Any]]:
    return Event[dict[str, Any]].model_validate_json(payload)


def stream_for(subject: str) -> str:
    prefix = subject.split(".", 1)[0]
    for name, subjects in STREAMS.items():
        if any(s.split(".", 1)[0] == prefix for s in subjects):
            return name
    raise ValueError(f"no stream carries subject {subject!r}")
