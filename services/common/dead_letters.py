"""Dead letters: events the outbox relay could not publish and events a consumer could not apply.

Both are parked in `dead_letter` with the error, so nothing stops behind them. Once the cause is
fixed, a replay puts an outbox row back in the outbox (same event id: the stream still dedupes it)
or applies a consumer's event again through that consumer (inbox, as_of and all), and removes the
dead letter in the same transaction. Listed and replayed per workspace by its admin (`admin.py`),
or across workspaces by an operator (`journeygraph dead-letters`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import orjson
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common.consumer import Runner
from services.common.errors import Conflict, NotFound
from services.common.events import decode_event
from services.common.outbox import RELAY, wrote_events
from services.common.pagination import Page, decode_cursor, encode_cursor


class DeadLetter(BaseModel):
    id: UUID
    consumer: str = Field(description=f"The consumer that could not apply the event, or {RELAY!r}.")
    workspace_id: str | None
    event_id: UUID | None = Field(description="Null when the message could not be read at all.")
    subject: str
    error: str
    attempts: int
    parked_at: datetime
    event: dict[str, Any] | None = Field(description="The event as it was published (null if unreadable).")


class Replayed(BaseModel):
    id: UUID
    event_id: UUID | None
    replayed_to: Literal["outbox", "consumer"]


_COLUMNS = "id, consumer, workspace_id, event_id, subject, payload, error, attempts, parked_at"


def _public(row: Any) -> DeadLetter:
    try:
        event = orjson.loads(row.payload)
    except orjson.JSONDecodeError:
        event = None
    data = {k: v for k, v in row._mapping.items() if k != "payload"}
    return DeadLetter(**data, event=event if isinstance(event, dict) else None)


async def list_dead_letters(
    session: AsyncSession,
    *,
    workspace_id: str | None,
    consumer: str | None,
    cursor: str | None,
    limit: int,
) -> Page[DeadLetter]:
    """Oldest first; `workspace_id` None: every workspace's (operators only)."""
    where: list[str] = ["true"]
    params: dict[str, Any] = {"n": limit + 1}
    for column, value in (("workspace_id", workspace_id), ("consumer", consumer)):
        if value is not None:
            where.append(f"{column} = :{column}")
            params[column] = value
    if cursor is not None:
        where.append("id > :after")
        params["after"] = decode_cursor(cursor)
    rows = (
        await session.execute(
            text(f"SELECT {_COLUMNS} FROM dead_letter WHERE {' AND '.join(where)} ORDER BY id LIMIT :n"), params
        )
    ).all()
    items = [_public(r) for r in rows[:limit]]
    return Page[DeadLetter](items=items, next_cursor=encode_cursor(items[-1].id) if len(rows) > limit else None)


async def replay_dead_letter(
    sessionmaker: async_sessionmaker[AsyncSession],
    runners: dict[str, Runner],
    *,
    dead_letter_id: UUID,
    workspace_id: str | None,
) -> Replayed:
    """Put the event back where it failed; Conflict (and the dead letter kept, its error updated)
    when it fails again."""
    async with sessionmaker() as session, session.begin():
        row = (
            await session.execute(
                text(
                    f"SELECT {_COLUMNS} FROM dead_letter WHERE id = :id "
                    "AND (CAST(:w AS text) IS NULL OR workspace_id = :w) FOR UPDATE"
                ),
                {"id": dead_letter_id, "w": workspace_id},
            )
        ).first()
        if row is None:
            raise NotFound(f"No dead letter with id {dead_letter_id} in this workspace.")
        if row.consumer == RELAY:
            await session.execute(
                text(
                    "INSERT INTO outbox_event (id, workspace_id, subject, payload) "
                    "VALUES (:id, :w, :subject, :payload) ON CONFLICT (id) DO NOTHING"
                ),
                {"id": row.event_id, "w": row.workspace_id, "subject": row.subject, "payload": row.payload},
            )
            await session.execute(text("DELETE FROM dead_letter WHERE id = :id"), {"id": row.id})
            wrote_events(session)
            return Replayed(id=row.id, event_id=row.event_id, replayed_to="outbox")
        runner = runners.get(row.consumer)
        if runner is None:
            raise Conflict(
                f"The consumer {row.consumer!r} of this dead letter does not run in this service any more; "
                "nothing can apply it."
            )
        try:
            event = decode_event(row.payload)
        except ValueError:
            raise Conflict("This dead letter's message cannot be read as an event; it cannot be replayed.") from None
    try:
        async with sessionmaker() as session, session.begin():
            await runner.apply(session, [event])
            await session.execute(text("DELETE FROM dead_letter WHERE id = :id"), {"id": row.id})
    except Exception as exc:
        async with sessionmaker() as session, session.begin():
            await session.execute(
                text("UPDATE dead_letter SET error = :e, attempts = attempts + 1 WHERE id = :id"),
                {"id": row.id, "e": repr(exc)[:2000]},
            )
        raise Conflict(f"The replay failed again and the dead letter is kept: {exc!r}"[:1000]) from None
    return Replayed(id=row.id, event_id=row.event_id, replayed_to="consumer")
