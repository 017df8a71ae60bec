"""The journey service's writes: personas, touchpoints, journeys, stages and steps.

Every write forgets the journeys the request has read (`journey_changed`): a journey's map carries
its persona, stages, steps and touchpoints, so a later field of the same document reads it again."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from gateway.catalog import CatalogTouchpoint, Persona, as_uuid
from gateway.mutations.common import UNSET, IdempotencyKey, as_body, create, journey_changed
from gateway.schema import Context, Journey


async def _part_journey(root: JourneyPart, info: Info[Context, None]) -> Journey | None:
    journey_map = await info.context.maps.load(root.journey_id)
    return Journey.of(journey_map["journey"]) if journey_map else None


@strawberry.type(description="A stage or step written: its id, and its journey with the map read after the write.")
class JourneyPart:
    id: strawberry.ID
    journey_id: strawberry.Private[str]
    journey: Journey | None = strawberry.field(resolver=_part_journey, description="Null once the journey is gone.")


@strawberry.type(description="What a delete removed: its id (a client drops it from its cache).")
class Deleted:
    id: strawberry.ID


# Inputs: the REST bodies' fields (snake_case here, camelCase in the schema); the service checks them. An
# update's fields left out keep their value; `null` clears one that may be empty (the others refuse it, 422).


@strawberry.input(description="As POST /v1/personas takes it.")
class CreatePersonaInput:
    key: str
    name: str
    role: str | None = UNSET
    background: str | None = UNSET
    needs: list[str] | None = UNSET
    goals: list[str] | None = UNSET
    pains: list[str] | None = UNSET
    priority: int | None = UNSET
    rules: JSON | None = strawberry.field(default=UNSET, description="[{name, when}] as the REST API takes them.")


@strawberry.input(description="As PATCH /v1/personas/{id} takes it: only the fields sent change, `null` clears.")
class UpdatePersonaInput:
    key: str | None = UNSET
    name: str | None = UNSET
    role: str | None = UNSET
    background: str | None = UNSET
    needs: list[str] | None = UNSET
    goals: list[str] | None = UNSET
    pains: list[str] | None = UNSET
    priority: int | None = UNSET
    rules: JSON | None = strawberry.field(default=UNSET, description="[{name, when}] as the REST API takes them.")


@strawberry.input(description="As POST /v1/touchpoints takes it.")
class CreateTouchpointInput:
    key: str
    name: str
    channel: str
    department: str | None = UNSET
    yearly_cost: str | None = strawberry.field(default=UNSET, description='A decimal string, "520000.00".')
    currency: str | None = UNSET
    description: str | None = UNSET


@strawberry.input(description="As PATCH /v1/touchpoints/{id} takes it: only the fields sent change, `null` clears.")
class UpdateTouchpointInput:
    key: str | None = UNSET
    name: str | None = UNSET
    channel: str | None = UNSET
    department: str | None = UNSET
    yearly_cost: str | None = strawberry.field(default=UNSET, description='A decimal string, "520000.00".')
    currency: str | None = UNSET
    description: str | None = UNSET


@strawberry.input(description="A stage, as POST /v1/journeys/{id}/stages takes it (and a new journey's `stages`).")
class StageInput:
    key: str
    name: str
    position: int | None = UNSET


@strawberry.input(description="As PATCH /v1/journeys/{id}/stages/{stageId} takes it: rename or move a stage.")
class UpdateStageInput:
    key: str | None = UNSET
    name: str | None = UNSET
    position: int | None = strawberry.field(default=UNSET, description="Move the stage here (0-based).")


@strawberry.input(description="As POST /v1/journeys takes it; without `stages` it gets Need → Buy → Use.")
class CreateJourneyInput:
    key: str
    name: str
    description: str | None = UNSET
    persona_id: strawberry.ID | None = UNSET
    owner: str | None = UNSET
    team: str | None = UNSET
    status: str | None = UNSET
    state: str | None = UNSET
    improves_journey_id: strawberry.ID | None = UNSET
    stages: list[StageInput] | None = UNSET


@strawberry.input(description="As PATCH /v1/journeys/{id} takes it: only the fields sent change, `null` clears.")
class UpdateJourneyInput:
    key: str | None = UNSET
    name: str | None = UNSET
    description: str | None = UNSET
    persona_id: strawberry.ID | None = UNSET
    owner: str | None = UNSET
    team: str | None = UNSET
    status: str | None = UNSET
    state: str | None = UNSET
    improves_journey_id: strawberry.ID | None = UNSET


@strawberry.input(description="As POST /v1/journeys/{id}/steps takes it: a touchpoint placed in a stage.")
class AddStepInput:
    stage_id: strawberry.ID
    touchpoint_id: strawberry.ID
    position: int | None = UNSET
    moment_of_truth: bool | None = UNSET
    expected_emotion: int | None = UNSET


@strawberry.input(description="As PATCH /v1/journeys/{id}/steps/{stepId} takes it: move or change a step.")
class UpdateStepInput:
    stage_id: strawberry.ID | None = strawberry.field(
        default=UNSET, description="Move the step to another stage of its journey."
    )
    position: int | None = UNSET
    moment_of_truth: bool | None = UNSET
    expected_emotion: int | None = UNSET


# Resolvers --------------------------------------------------------------------------------------


async def _change(info: Info[Context, None], path: str, input: Any) -> Any:
    """PATCH a journey-service resource; the journeys read so far are read again."""
    changed = await info.context.send("PATCH", "journey", path, as_body(input))
    journey_changed(info)
    return changed


async def _delete(info: Info[Context, None], path: str, id: str) -> Deleted:
    """DELETE a journey-service resource (the service answers 204, and 404 when it is gone already)."""
    await info.context.send("DELETE", "journey", path)
    journey_changed(info)
    return Deleted(id=strawberry.ID(id))


def _persona_path(id: strawberry.ID) -> str:
    return f"/v1/personas/{as_uuid(str(id), 'a persona')}"


def _touchpoint_path(id: strawberry.ID) -> str:
    return f"/v1/touchpoints/{as_uuid(str(id), 'a touchpoint')}"


def _part_path(journey_id: strawberry.ID, part: str, id: strawberry.ID | None = None) -> tuple[str, str]:
    """The journey's id and the path of its `part` (stages, steps), or of the part `id` of it."""
    journey = as_uuid(str(journey_id), "a journey")
    path = f"/v1/journeys/{journey}/{part}"
    return journey, path if id is None else f"{path}/{as_uuid(str(id), 'a ' + part.removesuffix('s'))}"


async def _create_persona(
    info: Info[Context, None], input: CreatePersonaInput, idempotency_key: IdempotencyKey = None
) -> Persona:
    return Persona.of(await create(info, "createPersona", "journey", "/v1/personas", input, idempotency_key))


async def _update_persona(info: Info[Context, None], id: strawberry.ID, input: UpdatePersonaInput) -> Persona:
    return Persona.of(await _change(info, _persona_path(id), input))


async def _delete_persona(info: Info[Context, None], id: strawberry.ID) -> Deleted:
    return await _delete(info, _persona_path(id), id)


async def _create_touchpoint(
    info: Info[Context, None], input: CreateTouchpointInput, idempotency_key: IdempotencyKey = None
) -> CatalogTouchpoint:
    created = await create(info, "createTouchpoint", "journey", "/v1/touchpoints", input, idempotency_key)
    return CatalogTouchpoint.of(created)


async def _update_touchpoint(
    info: Info[Context, None], id: strawberry.ID, input: UpdateTouchpointInput
) -> CatalogTouchpoint:
    return CatalogTouchpoint.of(await _change(info, _touchpoint_path(id), input))


async def _delete_touchpoint(info: Info[Context, None], id: strawberry.ID) -> Deleted:
    return await _delete(info, _touchpoint_path(id), id)


async def _create_journey(
    info: Info[Context, None], input: CreateJourneyInput, idempotency_key: IdempotencyKey = None
) -> Journey:
    return Journey.of(await create(info, "createJourney", "journey", "/v1/journeys", input, idempotency_key))


async def _update_journey(info: Info[Context, None], id: strawberry.ID, input: UpdateJourneyInput) -> Journey:
    return Journey.of(await _change(info, f"/v1/journeys/{as_uuid(str(id), 'a journey')}", input))


async def _delete_journey(info: Info[Context, None], id: strawberry.ID) -> Deleted:
    return await _delete(info, f"/v1/journeys/{as_uuid(str(id), 'a journey')}", id)


async def _add_part(
    info: Info[Context, None], mutation: str, journey_id: strawberry.ID, part: str, data: Any, key: str | None
) -> JourneyPart:
    """POST a stage or step (`part`: stages, steps) to a journey."""
    journey, path = _part_path(journey_id, part)
    added = await create(info, mutation, "journey", path, data, key)
    journey_changed(info)
    return JourneyPart(id=strawberry.ID(added["id"]), journey_id=journey)


async def _change_part(
    info: Info[Context, None], journey_id: strawberry.ID, part: str, id: strawberry.ID, input: Any
) -> JourneyPart:
    journey, path = _part_path(journey_id, part, id)
    changed = await _change(info, path, input)
    return JourneyPart(id=strawberry.ID(changed["id"]), journey_id=journey)


async def _add_stage(
    info: Info[Context, None], journey_id: strawberry.ID, input: StageInput, idempotency_key: IdempotencyKey = None
) -> JourneyPart:
    return await _add_part(info, "addStage", journey_id, "stages", input, idempotency_key)


async def _update_stage(
    info: Info[Context, None], journey_id: strawberry.ID, id: strawberry.ID, input: UpdateStageInput
) -> JourneyPart:
    return await _change_part(info, journey_id, "stages", id, input)


async def _remove_stage(info: Info[Context, None], journey_id: strawberry.ID, id: strawberry.ID) -> Deleted:
    return await _delete(info, _part_path(journey_id, "stages", id)[1], id)


async def _add_step(
    info: Info[Context, None], journey_id: strawberry.ID, input: AddStepInput, idempotency_key: IdempotencyKey = None
) -> JourneyPart:
    return await _add_part(info, "addStep", journey_id, "steps", input, idempotency_key)


async def _update_step(
    info: Info[Context, None], journey_id: strawberry.ID, id: strawberry.ID, input: UpdateStepInput
) -> JourneyPart:
    return await _change_part(info, journey_id, "steps", id, input)


async def _remove_step(info: Info[Context, None], journey_id: strawberry.ID, id: strawberry.ID) -> Deleted:
    return await _delete(info, _part_path(journey_id, "steps", id)[1], id)


@strawberry.type
class ModellingMutation:
    create_persona: Persona = strawberry.mutation(resolver=_create_persona, description="Create a persona.")
    update_persona: Persona = strawberry.mutation(
        resolver=_update_persona, description="Change a persona (only the fields sent)."
    )
    delete_persona: Deleted = strawberry.mutation(
        resolver=_delete_persona, description="Delete a persona no journey uses (a 409 names the journeys otherwise)."
    )
    create_touchpoint: CatalogTouchpoint = strawberry.mutation(
        resolver=_create_touchpoint, description="Add a touchpoint to the workspace's catalogue."
    )
    update_touchpoint: CatalogTouchpoint = strawberry.mutation(
        resolver=_update_touchpoint, description="Change a touchpoint of the catalogue (only the fields sent)."
    )
    delete_touchpoint: Deleted = strawberry.mutation(
        resolver=_delete_touchpoint,
        description="Delete a touchpoint no step, interaction or outcome refers to (a 409 names them otherwise).",
    )
    create_journey: Journey = strawberry.mutation(
        resolver=_create_journey, description="Create a journey (without `stages`: Need → Buy → Use)."
    )
    update_journey: Journey = strawberry.mutation(
        resolver=_update_journey, description="Change a journey (only the fields sent)."
    )
    delete_journey: Deleted = strawberry.mutation(
        resolver=_delete_journey,
        description="Delete a journey with its stages and steps (status `retired` keeps its history instead).",
    )
    add_stage: JourneyPart = strawberry.mutation(
        resolver=_add_stage, description="Add a stage to a journey (at `position`, or at the end)."
    )
    update_stage: JourneyPart = strawberry.mutation(
        resolver=_update_stage, description="Rename or move a stage; the other stages shift to keep the order dense."
    )
    remove_stage: Deleted = strawberry.mutation(
        resolver=_remove_stage, description="Remove an empty stage (a 409 names its steps otherwise)."
    )
    add_step: JourneyPart = strawberry.mutation(
        resolver=_add_step, description="Place a touchpoint in a stage of a journey."
    )
    update_step: JourneyPart = strawberry.mutation(
        resolver=_update_step,
        description="Move a step (stage, position) or change its moment-of-truth flag and expected emotion.",
    )
    remove_step: Deleted = strawberry.mutation(
        resolver=_remove_step, description="Remove a step from its journey (the touchpoint stays in the catalogue)."
    )
