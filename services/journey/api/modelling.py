"""REST routes of the journey model (personas, touchpoints, journeys, stages, steps).

Thin handlers over the store; every change publishes its event through the outbox, with the id and
the version of its aggregate (a stage's or step's is its journey's).
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.auth import Caller, caller_with
from services.common.db import SessionDep
from services.common.errors import PROBLEM_RESPONSES
from services.common.idempotency import IdempotencyDep
from services.common.outbox import emit
from services.common.pagination import CursorQuery, LimitQuery, Page
from services.common.vocabulary import Channel
from services.journey.events import Deleted, JourneyCreated, StagesChanged
from services.journey.models import (
    JourneyCreate,
    JourneyMap,
    JourneyPublic,
    JourneyState,
    JourneyStatus,
    JourneyUpdate,
    PersonaCreate,
    PersonaPublic,
    PersonaUpdate,
    Stage,
    StageCreate,
    StagePublic,
    StageUpdate,
    StepCreate,
    StepPublic,
    StepUpdate,
    TouchpointCreate,
    TouchpointPublic,
    TouchpointUpdate,
)
from services.journey.store import catalogue, journeys, maps, steps

Reader = Annotated[Caller, caller_with("journeys:read")]
Writer = Annotated[Caller, caller_with("journeys:write")]
PersonaId = Annotated[UUID, Path(description="The persona's id.")]
TouchpointId = Annotated[UUID, Path(description="The touchpoint's id.")]
JourneyId = Annotated[UUID, Path(description="The journey's id.")]
StageId = Annotated[UUID, Path(description="The stage's id.")]
StepId = Annotated[UUID, Path(description="The step's id.")]
Ids = Annotated[list[UUID] | None, Query(alias="id", max_length=500, description="Only these ids (repeatable).")]
Keys = Annotated[list[str] | None, Query(alias="key", max_length=500, description="Only these keys (repeatable).")]
TextQuery = Annotated[str | None, Query(max_length=200, description="Case-insensitive text search in the name.")]

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES)


async def _publish(
    session: AsyncSession, caller: Caller, type: str, data: BaseModel, aggregate_id: UUID, version: int
) -> None:
    """The change's event: the aggregate's id and its version after the change (a deletion's: + 1)."""
    await emit(
        session, workspace_id=caller.workspace_id, type=type, data=data, aggregate_id=aggregate_id, version=version
    )


# Personas ---------------------------------------------------------------------------------------


@router.post("/personas", status_code=201, response_model=PersonaPublic, tags=["personas"])
async def create_persona(caller: Writer, idem: IdempotencyDep, session: SessionDep, body: PersonaCreate) -> Response:
    """Create a persona."""
    row = await catalogue.create_persona(session, workspace_id=caller.workspace_id, data=body)
    public = PersonaPublic.model_validate(row)
    await _publish(session, caller, "journey.persona.created", public, row.id, row.version)
    return await idem.respond(public)


@router.get("/personas", tags=["personas"])
async def list_personas(
    caller: Reader,
    session: SessionDep,
    ids: Ids = None,
    keys: Keys = None,
    q: TextQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> Page[PersonaPublic]:
    """List personas."""
    page = await catalogue.list_personas(
        session, workspace_id=caller.workspace_id, ids=ids, keys=keys, q=q, cursor=cursor, limit=limit
    )
    return Page[PersonaPublic].model_validate(page, from_attributes=True)


@router.get("/personas/{persona_id}", tags=["personas"])
async def get_persona(caller: Reader, session: SessionDep, persona_id: PersonaId) -> PersonaPublic:
    """Get a persona."""
    row = await catalogue.get_persona(session, workspace_id=caller.workspace_id, persona_id=persona_id)
    return PersonaPublic.model_validate(row)


@router.patch("/personas/{persona_id}", tags=["personas"])
async def update_persona(
    caller: Writer, session: SessionDep, persona_id: PersonaId, body: PersonaUpdate
) -> PersonaPublic:
    """Change a persona (only the fields sent)."""
    row = await catalogue.update_persona(session, workspace_id=caller.workspace_id, persona_id=persona_id, data=body)
    public = PersonaPublic.model_validate(row)
    await _publish(session, caller, "journey.persona.updated", public, row.id, row.version)
    return public


@router.delete("/personas/{persona_id}", status_code=204, tags=["personas"])
async def delete_persona(caller: Writer, session: SessionDep, persona_id: PersonaId) -> None:
    """Delete a persona that no journey uses."""
    row = await catalogue.delete_persona(session, workspace_id=caller.workspace_id, persona_id=persona_id)
    await _publish(session, caller, "journey.persona.deleted", Deleted(id=row.id, key=row.key), row.id, row.version + 1)


# Touchpoints ------------------------------------------------------------------------------------


@router.post("/touchpoints", status_code=201, response_model=TouchpointPublic, tags=["touchpoints"])
async def create_touchpoint(
    caller: Writer, idem: IdempotencyDep, session: SessionDep, body: TouchpointCreate
) -> Response:
    """Add a touchpoint to the workspace's catalogue."""
    row = await catalogue.create_touchpoint(session, workspace_id=caller.workspace_id, data=body)
    public = TouchpointPublic.model_validate(row)
    await _publish(session, caller, "journey.touchpoint.created", public, row.id, row.version)
    return await idem.respond(public)


@router.get("/touchpoints", tags=["touchpoints"])
async def list_touchpoints(
    caller: Reader,
    session: SessionDep,
    ids: Ids = None,
    keys: Keys = None,
    channel: Annotated[Channel | None, Query()] = None,
    department: Annotated[str | None, Query(max_length=200)] = None,
    q: TextQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> Page[TouchpointPublic]:
    """List the touchpoint catalogue."""
    page = await catalogue.list_touchpoints(
        session,
        workspace_id=caller.workspace_id,
        ids=ids,
        keys=keys,
        channel=channel,
        department=department,
        q=q,
        cursor=cursor,
        limit=limit,
    )
    return Page[TouchpointPublic].model_validate(page, from_attributes=True)


@router.get("/touchpoints/{touchpoint_id}", tags=["touchpoints"])
async def get_touchpoint(caller: Reader, session: SessionDep, touchpoint_id: TouchpointId) -> TouchpointPublic:
    """Get a touchpoint."""
    row = await catalogue.get_touchpoint(session, workspace_id=caller.workspace_id, touchpoint_id=touchpoint_id)
    return TouchpointPublic.model_validate(row)


@router.patch("/touchpoints/{touchpoint_id}", tags=["touchpoints"])
async def update_touchpoint(
    caller: Writer, session: SessionDep, touchpoint_id: TouchpointId, body: TouchpointUpdate
) -> TouchpointPublic:
    """Change a touchpoint (only the fields sent)."""
    row = await catalogue.update_touchpoint(
        session, workspace_id=caller.workspace_id, touchpoint_id=touchpoint_id, data=body
    )
    public = TouchpointPublic.model_validate(row)
    await _publish(session, caller, "journey.touchpoint.updated", public, row.id, row.version)
    return public


@router.delete("/touchpoints/{touchpoint_id}", status_code=204, tags=["touchpoints"])
async def delete_touchpoint(caller: Writer, session: SessionDep, touchpoint_id: TouchpointId) -> None:
    """Delete a touchpoint no journey step, interaction or outcome refers to (409 names them otherwise)."""
    row = await catalogue.delete_touchpoint(session, workspace_id=caller.workspace_id, touchpoint_id=touchpoint_id)
    await _publish(
        session, caller, "journey.touchpoint.deleted", Deleted(id=row.id, key=row.key), row.id, row.version + 1
    )


# Journeys ---------------------------------------------------------------------------------------


@router.post("/journeys", status_code=201, response_model=JourneyPublic, tags=["journeys"])
async def create_journey(caller: Writer, idem: IdempotencyDep, session: SessionDep, body: JourneyCreate) -> Response:
    """Create a journey; without `stages` it gets Need → Buy → Use."""
    row, stages = await journeys.create_journey(session, workspace_id=caller.workspace_id, data=body)
    public = JourneyPublic.model_validate(row)
    created = JourneyCreated(journey=public, stages=[StagePublic.model_validate(s) for s in stages])
    await _publish(session, caller, "journey.journey.created", created, row.id, row.version)
    return await idem.respond(public)


@router.get("/journeys", tags=["journeys"])
async def list_journeys(
    caller: Reader,
    session: SessionDep,
    ids: Ids = None,
    keys: Keys = None,
    persona_id: Annotated[UUID | None, Query()] = None,
    status: Annotated[JourneyStatus | None, Query()] = None,
    state: Annotated[JourneyState | None, Query()] = None,
    q: TextQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> Page[JourneyPublic]:
    """List journeys."""
    page = await journeys.list_journeys(
        session,
        workspace_id=caller.workspace_id,
        ids=ids,
        keys=keys,
        persona_id=persona_id,
        status=status,
        state=state,
        q=q,
        cursor=cursor,
        limit=limit,
    )
    return Page[JourneyPublic].model_validate(page, from_attributes=True)


@router.get("/journeys/{journey_id}", tags=["journeys"])
async def get_journey(caller: Reader, session: SessionDep, journey_id: JourneyId) -> JourneyPublic:
    """Get a journey."""
    row = await journeys.get_journey(session, workspace_id=caller.workspace_id, journey_id=journey_id)
    return JourneyPublic.model_validate(row)


@router.get("/journeys/{journey_id}/map", response_model=JourneyMap, tags=["journeys"])
async def get_journey_map(caller: Reader, session: SessionDep, journey_id: JourneyId) -> Response:
    """The whole journey map in one call: journey, persona, stages and steps with their touchpoints."""
    body = await maps.journey_map_json(session, workspace_id=caller.workspace_id, journey_id=journey_id)
    return Response(body, media_type="application/json")


class JourneyMaps(BaseModel):
    items: list[JourneyMap]
    not_found: list[UUID]


MapIds = Annotated[list[UUID], Query(alias="id", min_length=1, max_length=100, description="Journey ids (repeatable).")]


@router.get("/journey-maps", response_model=JourneyMaps, tags=["journeys"])
async def get_journey_maps(caller: Reader, session: SessionDep, ids: MapIds) -> Response:
    """The maps of up to 100 journeys in one call (batch read for the gateway); ids not in this
    workspace are listed in `not_found`."""
    body = await maps.journey_maps_json(session, workspace_id=caller.workspace_id, journey_ids=ids)
    return Response(body, media_type="application/json")


@router.patch("/journeys/{journey_id}", tags=["journeys"])
async def update_journey(
    caller: Writer, session: SessionDep, journey_id: JourneyId, body: JourneyUpdate
) -> JourneyPublic:
    """Change a journey (only the fields sent)."""
    row = await journeys.update_journey(session, workspace_id=caller.workspace_id, journey_id=journey_id, data=body)
    public = JourneyPublic.model_validate(row)
    await _publish(session, caller, "journey.journey.updated", public, row.id, row.version)
    return public


@router.delete("/journeys/{journey_id}", status_code=204, tags=["journeys"])
async def delete_journey(caller: Writer, session: SessionDep, journey_id: JourneyId) -> None:
    """Delete a journey with its stages and steps (retiring it keeps the history instead)."""
    row = await journeys.delete_journey(session, workspace_id=caller.workspace_id, journey_id=journey_id)
    await _publish(session, caller, "journey.journey.deleted", Deleted(id=row.id, key=row.key), row.id, row.version + 1)


# Stages -----------------------------------------------------------------------------------------


@router.get("/journeys/{journey_id}/stages", tags=["stages"])
async def list_stages(caller: Reader, session: SessionDep, journey_id: JourneyId) -> Page[StagePublic]:
    """The journey's stages in order, all in one page (`next_cursor` is null)."""
    await journeys.get_journey(session, workspace_id=caller.workspace_id, journey_id=journey_id)
    stages = await journeys.list_stages(session, journey_id=journey_id)
    return Page[StagePublic](items=[StagePublic.model_validate(s) for s in stages], next_cursor=None)


def _stages_changed(journey_id: UUID, stage: StagePublic, stages: list[Stage]) -> StagesChanged:
    return StagesChanged(journey_id=journey_id, stage=stage, stages=[StagePublic.model_validate(s) for s in stages])


@router.post("/journeys/{journey_id}/stages", status_code=201, response_model=StagePublic, tags=["stages"])
async def add_stage(
    caller: Writer, idem: IdempotencyDep, session: SessionDep, journey_id: JourneyId, body: StageCreate
) -> Response:
    """Add a stage (at `position`, or at the end)."""
    stages, version = await journeys.add_stage(
        session, workspace_id=caller.workspace_id, journey_id=journey_id, data=body
    )
    added = StagePublic.model_validate(next(s for s in stages if s.key == body.key))
    await _publish(
        session, caller, "journey.stage.added", _stages_changed(journey_id, added, stages), journey_id, version
    )
    return await idem.respond(added)


@router.patch("/journeys/{journey_id}/stages/{stage_id}", tags=["stages"])
async def update_stage(
    caller: Writer, session: SessionDep, journey_id: JourneyId, stage_id: StageId, body: StageUpdate
) -> StagePublic:
    """Rename or move a stage; the other stages shift to keep the order dense."""
    stages, version = await journeys.update_stage(
        session, workspace_id=caller.workspace_id, journey_id=journey_id, stage_id=stage_id, data=body
    )
    changed = StagePublic.model_validate(next(s for s in stages if s.id == stage_id))
    changes = _stages_changed(journey_id, changed, stages)
    await _publish(session, caller, "journey.stage.updated", changes, journey_id, version)
    return changed


@router.delete("/journeys/{journey_id}/stages/{stage_id}", status_code=204, tags=["stages"])
async def remove_stage(caller: Writer, session: SessionDep, journey_id: JourneyId, stage_id: StageId) -> None:
    """Remove an empty stage (409 names its steps otherwise)."""
    row, stages, version = await journeys.remove_stage(
        session, workspace_id=caller.workspace_id, journey_id=journey_id, stage_id=stage_id
    )
    removed = StagePublic.model_validate(row)
    changes = _stages_changed(journey_id, removed, stages)
    await _publish(session, caller, "journey.stage.removed", changes, journey_id, version)


# Steps ------------------------------------------------------------------------------------------


@router.post("/journeys/{journey_id}/steps", status_code=201, response_model=StepPublic, tags=["steps"])
async def add_step(
    caller: Writer, idem: IdempotencyDep, session: SessionDep, journey_id: JourneyId, body: StepCreate
) -> Response:
    """Place a touchpoint in a stage of the journey."""
    row, version = await steps.add_step(session, workspace_id=caller.workspace_id, journey_id=journey_id, data=body)
    public = StepPublic.model_validate(row)
    await _publish(session, caller, "journey.step.added", public, journey_id, version)
    return await idem.respond(public)


@router.get("/steps", tags=["steps"])
async def list_steps(
    caller: Reader,
    session: SessionDep,
    journey_ids: Annotated[list[UUID] | None, Query(alias="journey_id", max_length=500)] = None,
    touchpoint_ids: Annotated[list[UUID] | None, Query(alias="touchpoint_id", max_length=500)] = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> Page[StepPublic]:
    """Steps by journey or touchpoint ids (which journeys does a touchpoint serve?)."""
    page = await steps.list_steps(
        session,
        workspace_id=caller.workspace_id,
        journey_ids=journey_ids,
        touchpoint_ids=touchpoint_ids,
        cursor=cursor,
        limit=limit,
    )
    return Page[StepPublic].model_validate(page, from_attributes=True)


@router.patch("/journeys/{journey_id}/steps/{step_id}", tags=["steps"])
async def update_step(
    caller: Writer, session: SessionDep, journey_id: JourneyId, step_id: StepId, body: StepUpdate
) -> StepPublic:
    """Move a step (stage, position) or change its moment-of-truth flag and expected emotion."""
    row, version = await steps.update_step(
        session, workspace_id=caller.workspace_id, journey_id=journey_id, step_id=step_id, data=body
    )
    public = StepPublic.model_validate(row)
    await _publish(session, caller, "journey.step.updated", public, journey_id, version)
    return public


@router.delete("/journeys/{journey_id}/steps/{step_id}", status_code=204, tags=["steps"])
async def remove_step(caller: Writer, session: SessionDep, journey_id: JourneyId, step_id: StepId) -> None:
    """Remove a step from the journey (the touchpoint stays in the catalogue)."""
    row, version = await steps.remove_step(
        session, workspace_id=caller.workspace_id, journey_id=journey_id, step_id=step_id
    )
    await _publish(session, caller, "journey.step.removed", StepPublic.model_validate(row), journey_id, version)
