"""Every query on journeys and their stages (steps: steps.py).

Scoped by workspace here, never left to handlers. Structure edits lock the journey row, so
concurrent edits of one journey's stages and steps run one at a time and positions stay dense;
stages and steps belong to the journey aggregate, so each edit bumps the journey's version
(`bump_version`), which the edit's event carries.
"""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.common.errors import Conflict, NotFound, Unprocessable
from services.common.pagination import Page, keyset, page_of
from services.journey.models import (
    DEFAULT_STAGES,
    Journey,
    JourneyCreate,
    JourneyState,
    JourneyStatus,
    JourneyStep,
    JourneyUpdate,
    Persona,
    Stage,
    StageCreate,
    StageUpdate,
)
from services.journey.store._rows import get_scoped, insert_row, text_filter, update_row

# Journeys ---------------------------------------------------------------------------------------


async def _check_journey_links(
    session: AsyncSession,
    *,
    workspace_id: str,
    persona_id: UUID | None,
    improves_journey_id: UUID | None,
    state: JourneyState,
    journey_id: UUID | None = None,
) -> None:
    errors = []
    if persona_id is not None:
        found = await session.scalar(
            sa.select(col(Persona.id)).where(col(Persona.id) == persona_id, col(Persona.workspace_id) == workspace_id)
        )
        if found is None:
            errors.append({"field": "body.persona_id", "message": f"no persona {persona_id} in this workspace"})
    if improves_journey_id is not None:
        if state != JourneyState.target:
            errors.append(
                {
                    "field": "body.improves_journey_id",
                    "message": "only a target journey can improve a current one; set state to 'target'",
                }
            )
        elif improves_journey_id == journey_id:
            errors.append({"field": "body.improves_journey_id", "message": "a journey cannot improve itself"})
        else:
            improved = await session.scalar(
                sa.select(col(Journey.state)).where(
                    col(Journey.id) == improves_journey_id, col(Journey.workspace_id) == workspace_id
                )
            )
            if improved is None:
                errors.append(
                    {
                        "field": "body.improves_journey_id",
                        "message": f"no journey {improves_journey_id} in this workspace",
                    }
                )
            elif improved != JourneyState.current:
                errors.append(
                    {"field": "body.improves_journey_id", "message": "the improved journey must be a 'current' journey"}
                )
    if errors:
        raise Unprocessable("; ".join(e["message"] for e in errors), errors=errors)


async def create_journey(
    session: AsyncSession, *, workspace_id: str, data: JourneyCreate
) -> tuple[Journey, list[Stage]]:
    await _check_journey_links(
        session,
        workspace_id=workspace_id,
        persona_id=data.persona_id,
        improves_journey_id=data.improves_journey_id,
        state=data.state,
    )
    stages_in = data.stages if data.stages is not None else [StageCreate(key=k, name=n) for k, n in DEFAULT_STAGES]
    keys = [s.key for s in stages_in]
    if len(set(keys)) != len(keys):
        raise Unprocessable(
            "Stage keys must be unique within a journey.",
            errors=[{"field": "body.stages", "message": "duplicate stage key"}],
        )
    row = Journey(workspace_id=workspace_id, **data.model_dump(exclude={"stages"}))
    await insert_row(session, row, what="journey", key=data.key)
    ordered = sorted(enumerate(stages_in), key=lambda p: (p[1].position if p[1].position is not None else p[0], p[0]))
    stages = [
        Stage(workspace_id=workspace_id, journey_id=row.id, key=s.key, name=s.name, position=i)
        for i, (_, s) in enumerate(ordered)
    ]
    session.add_all(stages)
    await session.flush()
    await session.refresh(row)
    return row, stages


async def get_journey(session: AsyncSession, *, workspace_id: str, journey_id: UUID) -> Journey:
    return await get_scoped(session, Journey, workspace_id=workspace_id, id=journey_id, what="journey")


async def lock_journey(session: AsyncSession, *, workspace_id: str, journey_id: UUID) -> Journey:
    """The journey, locked: structure edits (stages, steps) of one journey run one at a time."""
    row = (
        await session.execute(
            sa.select(Journey)
            .where(col(Journey.id) == journey_id, col(Journey.workspace_id) == workspace_id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"No journey with id {journey_id} in this workspace.")
    return row


async def bump_version(session: AsyncSession, *, journey_id: UUID) -> int:
    """The journey's version + 1 for a change of its stages or steps (its row is locked already)."""
    version = await session.scalar(
        sa.text("UPDATE journey SET version = version + 1 WHERE id = :j RETURNING version"), {"j": journey_id}
    )
    return int(version)


async def list_journeys(
    session: AsyncSession,
    *,
    workspace_id: str,
    ids: list[UUID] | None,
    keys: list[str] | None,
    persona_id: UUID | None,
    status: JourneyStatus | None,
    state: JourneyState | None,
    q: str | None,
    cursor: str | None,
    limit: int,
) -> Page[Journey]:
    stmt = sa.select(Journey).where(col(Journey.workspace_id) == workspace_id, text_filter(col(Journey.name), q))
    if ids:
        stmt = stmt.where(col(Journey.id).in_(ids))
    if keys:
        stmt = stmt.where(col(Journey.key).in_(keys))
    if persona_id:
        stmt = stmt.where(col(Journey.persona_id) == persona_id)
    if status:
        stmt = stmt.where(col(Journey.status) == status)
    if state:
        stmt = stmt.where(col(Journey.state) == state)
    rows = (await session.execute(keyset(stmt, col(Journey.id), cursor=cursor, limit=limit))).scalars().all()
    return page_of(list(rows), limit=limit, id_of=lambda r: r.id)


async def update_journey(session: AsyncSession, *, workspace_id: str, journey_id: UUID, data: JourneyUpdate) -> Journey:
    row = await get_journey(session, workspace_id=workspace_id, journey_id=journey_id)
    changes = data.model_dump(exclude_unset=True)
    state = changes.get("state", row.state)
    improves = changes.get("improves_journey_id", row.improves_journey_id)
    if state == JourneyState.current and "state" in changes and "improves_journey_id" not in changes:
        improves = changes["improves_journey_id"] = None  # a current journey improves nothing
    await _check_journey_links(
        session,
        workspace_id=workspace_id,
        persona_id=changes.get("persona_id") if "persona_id" in changes else None,
        improves_journey_id=improves if "improves_journey_id" in changes else None,
        state=state,
        journey_id=journey_id,
    )
    await update_row(session, row, changes, what="journey")
    return row


async def delete_journey(session: AsyncSession, *, workspace_id: str, journey_id: UUID) -> Journey:
    """Deletes the journey with its stages and steps (its map); touchpoints stay in the catalogue.
    The row is locked: its deletion's event version is its last version + 1."""
    row = await lock_journey(session, workspace_id=workspace_id, journey_id=journey_id)
    await session.execute(sa.delete(JourneyStep).where(col(JourneyStep.journey_id) == journey_id))
    await session.delete(row)
    await session.flush()
    return row


# Stages -----------------------------------------------------------------------------------------


async def list_stages(session: AsyncSession, *, journey_id: UUID) -> list[Stage]:
    return list(
        (
            await session.execute(
                sa.select(Stage).where(col(Stage.journey_id) == journey_id).order_by(col(Stage.position))
            )
        )
        .scalars()
        .all()
    )


async def renumber(session: AsyncSession, table_name: str, ordered_ids: list[UUID]) -> None:
    """Stages or steps (`table_name`) take the positions 0.. in the order of `ordered_ids`."""
    # Positions are unique (deferred): renumber the whole list in one statement (one trigger run).
    if not ordered_ids:
        return
    await session.execute(
        sa.text(
            f"UPDATE {table_name} SET position = v.pos - 1 FROM unnest(CAST(:ids AS uuid[])) WITH ORDINALITY "
            f"AS v(id, pos) WHERE {table_name}.id = v.id AND {table_name}.position IS DISTINCT FROM v.pos - 1"
        ).bindparams(ids=ordered_ids),
    )


def place(ids: list[UUID], item: UUID, position: int | None) -> list[UUID]:
    """`ids` in order with `item` moved to `position` (the end when None)."""
    rest = [i for i in ids if i != item]
    at = len(rest) if position is None else min(position, len(rest))
    return [*rest[:at], item, *rest[at:]]


async def add_stage(
    session: AsyncSession, *, workspace_id: str, journey_id: UUID, data: StageCreate
) -> tuple[list[Stage], int]:
    """The journey's stages after the change, and its new version."""
    await lock_journey(session, workspace_id=workspace_id, journey_id=journey_id)
    stages = await list_stages(session, journey_id=journey_id)
    if any(s.key == data.key for s in stages):
        raise Conflict(f"This journey already has a stage with key {data.key!r}.")
    row = Stage(workspace_id=workspace_id, journey_id=journey_id, key=data.key, name=data.name, position=len(stages))
    session.add(row)
    await session.flush()
    if data.position is not None and data.position < len(stages):  # appended rows are already in place
        await renumber(session, "stage", place([s.id for s in stages], row.id, data.position))
    return await _stages_after_change(session, journey_id=journey_id)


async def _stage(session: AsyncSession, *, workspace_id: str, journey_id: UUID, stage_id: UUID) -> Stage:
    await lock_journey(session, workspace_id=workspace_id, journey_id=journey_id)
    row = await session.scalar(sa.select(Stage).where(col(Stage.id) == stage_id, col(Stage.journey_id) == journey_id))
    if row is None:
        raise NotFound(f"Journey {journey_id} has no stage {stage_id}.")
    return row


async def update_stage(
    session: AsyncSession, *, workspace_id: str, journey_id: UUID, stage_id: UUID, data: StageUpdate
) -> tuple[list[Stage], int]:
    """The journey's stages after the change, and its new version."""
    row = await _stage(session, workspace_id=workspace_id, journey_id=journey_id, stage_id=stage_id)
    changes = data.model_dump(exclude_unset=True, exclude={"position"})
    if "key" in changes and changes["key"] != row.key:
        clash = await session.scalar(
            sa.select(col(Stage.id)).where(col(Stage.journey_id) == journey_id, col(Stage.key) == changes["key"])
        )
        if clash is not None:
            raise Conflict(f"This journey already has a stage with key {changes['key']!r}.")
    for field, value in changes.items():
        setattr(row, field, value)
    await session.flush()
    if data.position is not None:
        ids = [s.id for s in await list_stages(session, journey_id=journey_id)]
        await renumber(session, "stage", place(ids, stage_id, data.position))
    return await _stages_after_change(session, journey_id=journey_id)


async def remove_stage(
    session: AsyncSession, *, workspace_id: str, journey_id: UUID, stage_id: UUID
) -> tuple[Stage, list[Stage], int]:
    """The removed stage, the journey's stages after the change, and its new version."""
    row = await _stage(session, workspace_id=workspace_id, journey_id=journey_id, stage_id=stage_id)
    steps = (
        (await session.execute(sa.select(col(JourneyStep.id)).where(col(JourneyStep.stage_id) == stage_id)))
        .scalars()
        .all()
    )
    if steps:
        raise Conflict(
            f"Stage {row.key!r} still holds {len(steps)} step(s); move or remove them first.",
            steps=[str(s) for s in steps],
        )
    await session.delete(row)
    await session.flush()
    remaining = [s.id for s in await list_stages(session, journey_id=journey_id)]
    await renumber(session, "stage", remaining)
    stages, version = await _stages_after_change(session, journey_id=journey_id)
    return row, stages, version


async def _stages_after_change(session: AsyncSession, *, journey_id: UUID) -> tuple[list[Stage], int]:
    stages = await list_stages(session, journey_id=journey_id)
    for s in stages:
        await session.refresh(s)
    return stages, await bump_version(session, journey_id=journey_id)
