"""The event contract: the envelope every service publishes, its byte budget, and the streams.

- Subjects are `<service>.<noun>.<verb-past>`; one stream per publishing service keeps every event
  (no max age by default), so a read model can be rebuilt by replaying from the start.
- The envelope names the aggregate the event is about (`aggregate_id`) and its `version`, which
  increases with every change of that aggregate (gaps are possible): a consumer drops an event whose
  version is not above the one it holds. A batch event (`data.items`) carries several aggregates;
  then the envelope's `aggregate_id` and `version` are null and every item has its own `id` (and
  `version`, for aggregates that change; facts such as interactions never change).
- Delivery is at least once and may reorder events across aggregates: consumers dedupe on `id`.
- No event is larger than MAX_EVENT_BYTES: batches are split by size (`outbox.batch_changes`), and
  the free-form fields of a single item are limited (`validation.FREEFORM_MAX_BYTES`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
# A quarter of NATS's default max_payload (1 MiB): room for headers and a server configured lower.
MAX_EVENT_BYTES = 256 * 1024


class Event(BaseModel, Generic[DataT]):
    """Envelope of every event. `id` is also the `Nats-Msg-Id` and a webhook's `webhook-id`."""

    id: UUID
    type: str = Field(description="The NATS subject, e.g. journey.journey.created.")
    workspace_id: str
    occurred_at: datetime
    aggregate_id: str | None = Field(
        default=None, description="The aggregate the event is about; null for a batch event (see its items)."
    )
    version: int | None = Field(
        default=None,
        description="The aggregate's version after this change; it increases with every change, so a consumer "
        "drops an event whose version is not above the one it holds. Null for a batch event.",
    )
    data: DataT


class EventTooLarge(ValueError):
    """An event over MAX_EVENT_BYTES: a write that would cause it is refused (422)."""


def _json_default(value: Any) -> Any:
    # orjson knows uuid.UUID but not asyncpg's own UUID type (raw fetches) nor Decimal (money).
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "bytes") and type(value).__name__ == "UUID":
        return str(UUID(bytes=value.bytes))
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode_data(data: Any) -> bytes:
    """The JSON of an event's data (a public model or a dict of that shape)."""
    if isinstance(data, BaseModel):
        return data.__pydantic_serializer__.to_json(data)
    return orjson.dumps(data, default=_json_default, option=orjson.OPT_UTC_Z)


def encode_event(
    *,
    event_id: UUID | str,
    type: str,
    workspace_id: str,
    occurred_at: datetime,
    data: Any,
    aggregate_id: UUID | str | None = None,
    version: int | None = None,
) -> bytes:
    """The envelope as published; raises EventTooLarge over the byte budget."""
    payload = orjson.dumps(
        {
            "id": event_id,
            "type": type,
            "workspace_id": workspace_id,
            "occurred_at": occurred_at,
            "aggregate_id": None if aggregate_id is None else str(aggregate_id),
            "version": version,
            "data": orjson.Fragment(data if isinstance(data, bytes) else encode_data(data)),
        },
        default=_json_default,
        option=orjson.OPT_UTC_Z,
    )
    if len(payload) > MAX_EVENT_BYTES:
        raise EventTooLarge(
            f"a {type} event of {len(payload)} bytes is over the budget of {MAX_EVENT_BYTES} bytes; "
            "make the change smaller"
        )
    return payload


def item_batches(items: Sequence[Any], *, budget: int = MAX_EVENT_BYTES - 4096) -> Iterator[bytes]:
    """`{"items": [...]}` documents of at most `budget` bytes each, every item in exactly one, in
    order (the 4 KiB left is the envelope's). An item alone over the budget raises EventTooLarge."""
    frame = len(b'{"items":[]}')
    chunk: list[bytes] = []
    size = frame
    for item in items:
        encoded = encode_data(item)
        if frame + len(encoded) > budget:
            raise EventTooLarge(f"one item of {len(encoded)} bytes is over the event budget of {budget} bytes")
        if chunk and size + len(encoded) + 1 > budget:
            yield b'{"items":[' + b",".join(chunk) + b"]}"
            chunk, size = [], frame
        chunk.append(encoded)
        size += len(encoded) + 1
    if chunk:
        yield b'{"items":[' + b",".join(chunk) + b"]}"


# Parametrised once: `Event[...]` builds (or looks up) a class on every subscript.
_ENVELOPE = Event[dict[str, Any]]


def decode_event(payload: bytes) -> Event[dict[str, Any]]:
    return _ENVELOPE.model_validate_json(payload)


def stream_for(subject: str) -> str:
    prefix = subject.split(".", 1)[0]
    for name, subjects in STREAMS.items():
        if any(s.split(".", 1)[0] == prefix for s in subjects):
            return name
    raise ValueError(f"no stream carries subject {subject!r}")
