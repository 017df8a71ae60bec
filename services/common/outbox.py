"""Transactional outbox: events are rows committed with the state change, then relayed to NATS.

No outbox library is mature enough (see NOTES.md), so the table and relay are ours:
- `emit` / `emit_many` insert event rows in the caller's transaction (nothing is sent if it rolls back);
- `relay.py:OutboxRelay` publishes committed rows to JetStream, in every replica.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
from nats.aio.client import Client as NATS
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError
from opentelemetry import propagate
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.events import DUPLICATE_WINDOW_SECONDS, STREAMS, encode_event, item_batches
from services.common.ids import new_ids
from services.common.worker import wake_on_commit


@dataclass(frozen=True, slots=True)
class Change:
    """One event to write: its subject, the public state (a model, a dict of that shape, or its JSON),
    and the aggregate it is about with the aggregate's version after the change."""

    type: str
    data: Any
    aggregate_id: UUID | str | None = None
    version: int | None = None


def batch_changes(type: str, items: Sequence[Any]) -> list[Change]:
    """Every item in exactly one `{"items": [...]}` event of `type`, split by the byte budget."""
    return [Change(type, data) for data in item_batches(items)]


# One statement for any number of events: arrays through unnest beat executemany (STYLE.md).
def outbox_insert(prefix: str = "", gate: str = "", *, keyed: bool = False) -> str:
    """The INSERT of `OutboxRows` given as parameters named `{prefix}workspace_id`, `{prefix}ids`, ...;
    `gate` (a WHERE clause) can hold it back, for a statement that writes more than events. `keyed`
    adds `{prefix}keys` (uuid[]), the id of the row each event is about, as `e.key` for the gate: a
    statement inserting many rows writes the events of the rows it inserted, not of those it skipped."""
    key_array, key_column = (f", CAST(:{prefix}keys AS uuid[])", ", key") if keyed else ("", "")
    return (
        "INSERT INTO outbox_event (id, workspace_id, subject, payload, headers) "
        f"SELECT e.id, :{prefix}workspace_id, e.subject, e.payload, CAST(:{prefix}headers AS jsonb) "
        f"FROM unnest(CAST(:{prefix}ids AS uuid[]), CAST(:{prefix}subjects AS text[]), "
        f"CAST(:{prefix}payloads AS bytea[]){key_array}) AS e(id, subject, payload{key_column}) {gate}"
    )


_INSERT = text(outbox_insert())
WAKE_KEY = "outbox_relay"  # the relay's `wake` in the sessionmaker's info (service.py)


async def emit(
    session: AsyncSession,
    *,
    workspace_id: str,
    type: str,
    data: Any,
    aggregate_id: UUID | str | None,
    version: int | None,
) -> str:
    """Write one event in the caller's transaction; returns its id (also its `Nats-Msg-Id`)."""
    change = Change(type, data, aggregate_id, version)
    return (await emit_many(session, workspace_id=workspace_id, changes=[change]))[0]


async def emit_many(session: AsyncSession, *, workspace_id: str, changes: Sequence[Change]) -> list[str]:
    """Write events in the caller's transaction; returns their ids in order."""
    if not changes:
        return []
    rows = outbox_rows(workspace_id, changes)
    await session.execute(
        _INSERT,
        {
            "workspace_id": workspace_id,
            "headers": rows.headers,
            "ids": rows.ids,
            "subjects": rows.subjects,
            "payloads": rows.payloads,
        },
    )
    wrote_events(session)
    return rows.ids


def wrote_events(session: AsyncSession) -> None:
    """Wake this process's relay when the session commits (for writers with their own statement)."""
    wake_on_commit(session, WAKE_KEY)


@dataclass(slots=True)
class OutboxRows:
    """Encoded events as the columns of `outbox_event`, for writers that build their own statement."""

    ids: list[str]  # UUIDv7 as text
    subjects: list[str]
    payloads: list[bytes]
    headers: str  # JSON of the trace context, the same for every event of one write


def outbox_rows(workspace_id: str, changes: Sequence[Change]) -> OutboxRows:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)  # the trace context travels with the event
    now = datetime.now(UTC)
    ids = new_ids(len(changes))
    return OutboxRows(
        ids=ids,
        subjects=[c.type for c in changes],
        payloads=[
            encode_event(
                event_id=event_id,
                type=c.type,
                workspace_id=workspace_id,
                occurred_at=now,
                data=c.data,
                aggregate_id=c.aggregate_id,
                version=c.version,
            )
            for event_id, c in zip(ids, changes, strict=True)
        ],
        headers=orjson.dumps(carrier).decode(),
    )


async def ensure_streams(nc: NATS, *, max_age_days: int = 0) -> None:
    """Create or update the event streams (idempotent; safe from every replica)."""
    js = nc.jetstream()
    for name, subjects in STREAMS.items():
        config = StreamConfig(
            name=name,
            subjects=subjects,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            max_age=max_age_days * 86400 if max_age_days else None,
        )
        try:
            await js.stream_info(name)
            await js.update_stream(config)
        except NotFoundError:
            with contextlib.suppress(Exception):  # created concurrently by another replica
                await js.add_stream(config)


RELAY = "outbox-relay"  # the `consumer` of rows the relay parks in dead_letter
