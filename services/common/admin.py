"""Every service's operations API for its workspace's admin: how fresh its projections are, and the
events that could not be published or applied (list, replay)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import text

from services.common.auth import Caller, caller_with
from services.common.consumer import Runner
from services.common.db import SessionDep
from services.common.dead_letters import DeadLetter, list_dead_letters, replay_dead_letter
from services.common.errors import PROBLEM_RESPONSES
from services.common.events import stream_for
from services.common.idempotency import IdempotencyDep
from services.common.pagination import CursorQuery, LimitQuery, Page

Admin = Annotated[Caller, caller_with("admin")]
router = APIRouter(prefix="/v1/admin", tags=["operations"], responses=PROBLEM_RESPONSES)


class ConsumerState(BaseModel):
    consumer: str
    as_of: datetime | None = Field(description="occurred_at of the last event it applied for this workspace.")
    applied_at: datetime | None = Field(description="When it last applied one.")
    dead_letters: int = Field(description="This workspace's events it parked.")
    pending_events: int | None = Field(
        description="Events of the stream (every workspace's) not yet applied; null when the broker is unreachable."
    )


async def _pending(request: Request, runner: Runner) -> int | None:
    consumer = runner.consumer
    try:
        js = request.app.state.broker.connection.jetstream()
        info = await js.consumer_info(stream_for(f"{consumer.stream}.x"), consumer.name, timeout=2)
    except Exception:
        return None
    return int(info.num_pending or 0) + int(info.num_ack_pending or 0)


@router.get("/consumers")
async def list_consumers(caller: Admin, session: SessionDep, request: Request) -> Page[ConsumerState]:
    """The service's consumers (projections included): how far each applied this workspace's events,
    and how many events of the stream it has yet to apply. All in one page (a service has a few)."""
    runners: dict[str, Runner] = request.app.state.runners
    names = sorted(runners)
    rows = await session.execute(
        text(
            "SELECT c.name, p.as_of, p.applied_at, "
            "(SELECT count(*) FROM dead_letter d WHERE d.consumer = c.name AND d.workspace_id = :w) AS dead "
            "FROM unnest(CAST(:names AS text[])) AS c(name) "
            "LEFT JOIN projection_state p ON p.consumer = c.name AND p.workspace_id = :w ORDER BY c.name"
        ),
        {"w": caller.workspace_id, "names": names},
    )
    items = [
        ConsumerState(
            consumer=r.name,
            as_of=r.as_of,
            applied_at=r.applied_at,
            dead_letters=r.dead,
            pending_events=await _pending(request, runners[r.name]),
        )
        for r in rows
    ]
    return Page[ConsumerState](items=items, next_cursor=None)


@router.get("/dead-letters")
async def get_dead_letters(
    caller: Admin,
    session: SessionDep,
    consumer: Annotated[
        str | None, Query(max_length=200, description="Only this consumer's (or outbox-relay).")
    ] = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> Page[DeadLetter]:
    """This workspace's events that were parked, oldest first, with the error that parked them."""
    return await list_dead_letters(
        session, workspace_id=caller.workspace_id, consumer=consumer, cursor=cursor, limit=limit
    )


@router.post("/dead-letters/{dead_letter_id}/replay", status_code=200)
async def replay(
    caller: Admin,
    idem: IdempotencyDep,
    request: Request,
    dead_letter_id: Annotated[UUID, Path(description="The dead letter's id.")],
) -> Response:
    """Publish or apply a parked event again; 409 keeps it (with the new error) if it fails again."""
    state = request.app.state
    replayed = await replay_dead_letter(
        state.sessionmaker, state.runners, dead_letter_id=dead_letter_id, workspace_id=caller.workspace_id
    )
    return await idem.respond(replayed, status_code=200)
