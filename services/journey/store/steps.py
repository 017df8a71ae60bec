"""Every query on the steps of a journey: a touchpoint placed in a stage, in order.

Scoped by workspace here, never left to handlers; edits lock the journey row (journeys.py), so
concurrent edits of one journey run one at a time and positions stay dense, and each bumps the
journey's version (returned with the step: its event carries it).
"""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.common.errors import Conflict, NotFound, Unprocessable
from services.common.pagination import Page, keyset, page_of
from services.journey.models import JourneyStep, Stage, StepCreate, StepUpdate, Touchpoint
from services.journey.store._rows import update_row
from services.journey.store.journeys import bump_version, lock_journey, place, renumber


async def _steps_in(session: AsyncSession, *, stage_id: UUID) -> list[UUID]:
    return list(
        (
            await session.execute(
                sa.select(col(JourneyStep.id))
                .where(col(JourneyStep.stage_id) == stage_id)
                .order_by(col(JourneyStep.position))
            )
        )
        .scalars()
        .all()
    )


async def _check_step_refs(
    session: AsyncSession, *, workspace_id: str, journey_id: UUID, stage_id: UUID | None, touchpoint_id: UUID | None
) -> None:
    errors = []
    if stage_id is not None:
        owner = await session.scalar(
            sa.select(col(Stage.journey_id)).where(col(Stage.id) == stage_id, col(Stage.workspace_id) == workspace_id)
        )
        if owner != journey_id:
            errors.append(
                {"field": "body.stage_id", "message": f"stage {stage_id} is not a stage of journey {journey_id}"}
            )
    if touchpoint_id is not None:
        found = await session.scalar(
            sa.select(col(Touchpoint.id)).where(
                col(Touchpoint.id) == touchpoint_id, col(Touchpoint.workspace_id) == workspace_id
            )
        )
        if found is None:
            errors.append(
                {
                    "field": "body.touchpoint_id",
                    "message": f"no touchpoint {touchpoint_id} in this workspace's catalogue",
                }
            )
    if errors:
        raise Unprocessable("; ".join(e["message"] for e in errors), errors=errors)


async def add_step(
    session: AsyncSession, *, workspace_id: str, journey_id: UUID, data: StepCreate
) -> tuple[JourneyStep, int]:
    await lock_journey(session, workspace_id=workspace_id, journey_id=journey_id)
    await _check_step_refs(
        session,
        workspace_id=workspace_id,
        journey_id=journey_id,
        stage_id=data.stage_id,
        touchpoint_id=data.touchpoint_id,
    )
    existing = await _steps_in(session, stage_id=data.stage_id)
    row = JourneyStep(
        workspace_id=workspace_id,
        journey_id=journey_id,
        position=len(existing),
        **data.model_dump(exclude={"position"}),
    )
    session.add(row)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise Conflict(
            f"Touchpoint {data.touchpoint_id} already sits in stage {data.stage_id} of this journey."
        ) from None
    if data.position is not None and data.position < len(existing):  # appended rows are already in place
        await renumber(session, "journey_step", place(existing, row.id, data.position))
    await session.refresh(row)
    return row, await bump_version(session, journey_id=journey_id)


async def _step(session: AsyncSession, *, workspace_id: str, journey_id: UUID, step_id: UUID) -> JourneyStep:
    await lock_journey(session, workspace_id=workspace_id, journey_id=journey_id)
    row = await session.scalar(
        sa.select(JourneyStep).where(col(JourneyStep.id) == step_id, col(JourneyStep.journey_id) == journey_id)
    )
    if row is None:
        raise NotFound(f"Journey {journey_id} has no step {step_id}.")
    return row


async def update_step(
    session: AsyncSession, *, workspace_id: str, journey_id: UUID, step_id: UUID, data: StepUpdate
) -> tuple[JourneyStep, int]:
    row = await _step(session, workspace_id=workspace_id, journey_id=journey_id, step_id=step_id)
    changes = data.model_dump(exclude_unset=True, exclude={"position", "stage_id"})
    old_stage = row.stage_id
    new_stage = data.stage_id or old_stage
    if new_stage != old_stage:
        await _check_step_refs(
            session, workspace_id=workspace_id, journey_id=journey_id, stage_id=new_stage, touchpoint_id=None
        )
        changes["stage_id"] = new_stage
        changes["position"] = 1_000_000  # parked at the end until renumbered below
    try:
        await update_row(session, row, changes, what="step")
    except IntegrityError:
        raise Conflict(f"Touchpoint {row.touchpoint_id} already sits in stage {new_stage} of this journey.") from None
    if new_stage != old_stage:
        await renumber(session, "journey_step", await _steps_in(session, stage_id=old_stage))
    if new_stage != old_stage or data.position is not None:
        await renumber(
            session, "journey_step", place(await _steps_in(session, stage_id=new_stage), row.id, data.position)
        )
    await session.refresh(row)
    return row, await bump_version(session, journey_id=journey_id)


async def remove_step(
    session: AsyncSession, *, workspace_id: str, journey_id: UUID, step_id: UUID
) -> tuple[JourneyStep, int]:
    row = await _step(session, workspace_id=workspace_id, journey_id=journey_id, step_id=step_id)
    await session.delete(row)
    await session.flush()
    await renumber(session, "journey_step", await _steps_in(session, stage_id=row.stage_id))
    return row, await bump_version(session, journey_id=journey_id)


async def list_steps(
    session: AsyncSession,
    *,
    workspace_id: str,
    journey_ids: list[UUID] | None,
    touchpoint_ids: list[UUID] | None,
    cursor: str | None,
    limit: int,
) -> Page[JourneyStep]:
    stmt = sa.select(JourneyStep).where(col(JourneyStep.workspace_id) == workspace_id)
    if journey_ids:
        stmt = stmt.where(col(JourneyStep.journey_id).in_(journey_ids))
    if touchpoint_ids:
        stmt = stmt.where(col(JourneyStep.touchpoint_id).in_(touchpoint_ids))
    rows = (await session.execute(keyset(stmt, col(JourneyStep.id), cursor=cursor, limit=limit))).scalars().all()
    return page_of(list(rows), limit=limit, id_of=lambda r: r.id)
