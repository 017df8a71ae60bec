"""Every query on the workspace catalogue: personas and touchpoints.

Scoped by workspace here, never left to handlers. Functions take keyword-only arguments, return
models, flush but never commit: the request's transaction commits with the outbox rows.
"""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.common.errors import Conflict
from services.common.pagination import Page, keyset, page_of
from services.common.vocabulary import Channel
from services.journey.models import (
    Interaction,
    Journey,
    JourneyStep,
    Outcome,
    Persona,
    PersonaCreate,
    PersonaUpdate,
    Stage,
    Touchpoint,
    TouchpointCreate,
    TouchpointUpdate,
)
from services.journey.store._rows import get_scoped, insert_row, text_filter, update_row

# Personas ---------------------------------------------------------------------------------------


async def create_persona(session: AsyncSession, *, workspace_id: str, data: PersonaCreate) -> Persona:
    row = Persona(workspace_id=workspace_id, **data.model_dump(mode="json"))
    await insert_row(session, row, what="persona", key=data.key)
    await session.refresh(row)
    return row


async def get_persona(session: AsyncSession, *, workspace_id: str, persona_id: UUID, lock: bool = False) -> Persona:
    return await get_scoped(session, Persona, workspace_id=workspace_id, id=persona_id, what="persona", lock=lock)


async def list_personas(
    session: AsyncSession,
    *,
    workspace_id: str,
    ids: list[UUID] | None,
    keys: list[str] | None,
    q: str | None,
    cursor: str | None,
    limit: int,
) -> Page[Persona]:
    stmt = sa.select(Persona).where(col(Persona.workspace_id) == workspace_id, text_filter(col(Persona.name), q))
    if ids:
        stmt = stmt.where(col(Persona.id).in_(ids))
    if keys:
        stmt = stmt.where(col(Persona.key).in_(keys))
    rows = (await session.execute(keyset(stmt, col(Persona.id), cursor=cursor, limit=limit))).scalars().all()
    return page_of(list(rows), limit=limit, id_of=lambda r: r.id)


async def update_persona(session: AsyncSession, *, workspace_id: str, persona_id: UUID, data: PersonaUpdate) -> Persona:
    row = await get_persona(session, workspace_id=workspace_id, persona_id=persona_id)
    changes = data.model_dump(mode="json", exclude_unset=True)
    await update_row(session, row, changes, what="persona")
    return row


async def delete_persona(session: AsyncSession, *, workspace_id: str, persona_id: UUID) -> Persona:
    """Deletes the persona (its deletion's event version is the row's last version + 1)."""
    row = await get_persona(session, workspace_id=workspace_id, persona_id=persona_id, lock=True)
    users = (
        (
            await session.execute(
                sa.select(col(Journey.key)).where(
                    col(Journey.workspace_id) == workspace_id, col(Journey.persona_id) == persona_id
                )
            )
        )
        .scalars()
        .all()
    )
    if users:
        raise Conflict(
            f"Persona {row.key!r} is the persona of journeys {', '.join(sorted(users))}; "
            "give those journeys another persona first.",
            journeys=sorted(users),
        )
    await session.delete(row)
    await session.flush()
    return row


# Touchpoints ------------------------------------------------------------------------------------


async def create_touchpoint(session: AsyncSession, *, workspace_id: str, data: TouchpointCreate) -> Touchpoint:
    row = Touchpoint(workspace_id=workspace_id, **data.model_dump())
    await insert_row(session, row, what="touchpoint", key=data.key)
    await session.refresh(row)
    return row


async def get_touchpoint(
    session: AsyncSession, *, workspace_id: str, touchpoint_id: UUID, lock: bool = False
) -> Touchpoint:
    return await get_scoped(
        session, Touchpoint, workspace_id=workspace_id, id=touchpoint_id, what="touchpoint", lock=lock
    )


async def list_touchpoints(
    session: AsyncSession,
    *,
    workspace_id: str,
    ids: list[UUID] | None,
    keys: list[str] | None,
    channel: Channel | None,
    department: str | None,
    q: str | None,
    cursor: str | None,
    limit: int,
) -> Page[Touchpoint]:
    stmt = sa.select(Touchpoint).where(
        col(Touchpoint.workspace_id) == workspace_id, text_filter(col(Touchpoint.name), q)
    )
    if ids:
        stmt = stmt.where(col(Touchpoint.id).in_(ids))
    if keys:
        stmt = stmt.where(col(Touchpoint.key).in_(keys))
    if channel:
        stmt = stmt.where(col(Touchpoint.channel) == channel)
    if department:
        stmt = stmt.where(col(Touchpoint.department) == department)
    rows = (await session.execute(keyset(stmt, col(Touchpoint.id), cursor=cursor, limit=limit))).scalars().all()
    return page_of(list(rows), limit=limit, id_of=lambda r: r.id)


async def update_touchpoint(
    session: AsyncSession, *, workspace_id: str, touchpoint_id: UUID, data: TouchpointUpdate
) -> Touchpoint:
    row = await get_touchpoint(session, workspace_id=workspace_id, touchpoint_id=touchpoint_id)
    await update_row(session, row, data.model_dump(exclude_unset=True), what="touchpoint")
    return row


async def delete_touchpoint(session: AsyncSession, *, workspace_id: str, touchpoint_id: UUID) -> Touchpoint:
    """Deletes the touchpoint that no step, interaction or outcome refers to (its deletion's event
    version is the row's last version + 1). Locked first: an ingest resolving it holds it FOR KEY
    SHARE, so the checks below see what that ingest stored."""
    row = await get_touchpoint(session, workspace_id=workspace_id, touchpoint_id=touchpoint_id, lock=True)
    placements = (
        await session.execute(
            sa.select(col(JourneyStep.id), col(Journey.key), col(Stage.key))
            .join(Journey, col(Journey.id) == col(JourneyStep.journey_id))
            .join(Stage, col(Stage.id) == col(JourneyStep.stage_id))
            .where(col(JourneyStep.workspace_id) == workspace_id, col(JourneyStep.touchpoint_id) == touchpoint_id)
            .order_by(col(Journey.key), col(Stage.position))
        )
    ).all()
    if placements:
        steps = [{"step_id": str(s), "journey": j, "stage": st} for s, j, st in placements]
        named = ", ".join(f"{s['journey']}/{s['stage']}" for s in steps[:10])
        raise Conflict(
            f"Touchpoint {row.key!r} sits in {len(steps)} journey step(s) ({named}); remove those steps first.",
            steps=steps,
        )
    history = [
        what
        for what, table in (("interactions", Interaction), ("outcomes", Outcome))
        if await session.scalar(
            sa.select(
                sa.exists().where(col(table.workspace_id) == workspace_id, col(table.touchpoint_id) == touchpoint_id)
            )
        )
    ]
    if history:
        raise Conflict(
            f"Touchpoint {row.key!r} has recorded {' and '.join(history)}, which refer to it; it cannot be "
            "deleted. Keep it in the catalogue (remove it from journeys to stop mapping it).",
            recorded=history,
        )
    await session.delete(row)
    await session.flush()
    return row
