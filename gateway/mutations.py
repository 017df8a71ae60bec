"""Mutations: the services' writes through the gateway, with the caller's own token.

Every create is a POST under an `Idempotency-Key` (services/common/idempotency.py): the client's
`idempotencyKey`, or one derived from the caller, the mutation and its arguments. Sending the same
mutation again (a retry after an answer was lost) then returns the first answer instead of storing a
second row, and a key sent again with other arguments is the service's 409. The services keep keys
48 h (`IDEMPOTENCY_TTL_HOURS`): within that time a derived key makes two identical creates one
(re-creating a deleted persona with the same input returns the deleted one), so a client that means a
second identical create passes its own key.
`submitResponse` derives none: identical answers of two people are two responses; its `responseId` or
a client key makes its retries safe. Updates are PATCHes: the same values set again change nothing,
so they take no key.

A service's problem is the mutation's error (`ServiceError`: service, status, the problem with its
field errors). The gateway keeps nothing: the keys, like the rows, are the services'.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import datetime
from typing import Annotated, Any

import orjson
import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from gateway.catalog import CatalogTouchpoint, Persona, as_uuid
from gateway.feedback import Case, Response, Survey
from gateway.schema import Context, Journey

UNSET: Any = strawberry.UNSET
IdempotencyKey = Annotated[
    str | None,
    strawberry.argument(
        description="Any unique string; the same key and arguments again return the first answer. Omitted: "
        "derived from you, the mutation and its arguments (identical creates while the key is kept, 48 h, are one)."
    ),
]
ResponseKey = Annotated[
    str | None,
    strawberry.argument(
        description="Any unique string; the same key and response again return the first answer. Omitted: no key "
        "(identical answers of two people are two responses), but a `responseId` makes a retry safe too."
    ),
]


def _body(value: Any) -> Any:
    """An input as the REST body: the fields by their (snake_case) Python names; fields left out stay out,
    so the service's defaults apply and a PATCH changes only what was sent (`null` clears)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _body(v) for f in dataclasses.fields(value) if (v := getattr(value, f.name)) is not UNSET}
    if isinstance(value, list):
        return [_body(v) for v in value]
    return value


def _derived_key(context: Context, mutation: str, path: str, body: Any) -> str:
    """The same caller (workspace and subject, not the token: a refreshed token retries too) sending the
    same mutation with the same arguments: the same key."""
    caller = context.caller
    canonical = orjson.dumps([caller.workspace_id, caller.subject, mutation, path, body], option=orjson.OPT_SORT_KEYS)
    return "gateway-" + hashlib.sha256(canonical).hexdigest()


async def _create(
    info: Info[Context, None], mutation: str, service: str, path: str, data: Any, key: str | None, derive: bool = True
) -> Any:
    body = _body(data)
    if key is None and derive:
        key = _derived_key(info.context, mutation, path, body)
    return await info.context.send("POST", service, path, body, idempotency_key=key)


def _journey_changed(info: Info[Context, None]) -> None:
    """Forget the journeys this request has read: a later field reads their maps again. (All of them:
    strawberry's `DataLoader.clear(key)` raises KeyError for a key it has not loaded.)"""
    info.context.maps.clear_all()
    info.context.scores.clear_all()


async def _part_journey(root: JourneyPart, info: Info[Context, None]) -> Journey | None:
    journey_map = await info.context.maps.load(root.journey_id)
    return Journey.of(journey_map["journey"]) if journey_map else None


@strawberry.type(description="A stage or step written: its id, and its journey with the map read after the write.")
class JourneyPart:
    id: strawberry.ID
    journey_id: strawberry.Private[str]
    journey: Journey | None = strawberry.field(resolver=_part_journey, description="Null once the journey is gone.")


# Inputs: the REST bodies' fields (snake_case here, camelCase in the schema); the services check them --------


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


@strawberry.input(description="As POST /v1/touchpoints takes it.")
class CreateTouchpointInput:
    key: str
    name: str
    channel: str
    department: str | None = UNSET
    yearly_cost: str | None = strawberry.field(default=UNSET, description='A decimal string, "520000.00".')
    currency: str | None = UNSET
    description: str | None = UNSET


@strawberry.input(description="A stage, as POST /v1/journeys/{id}/stages takes it (and a new journey's `stages`).")
class StageInput:
    key: str
    name: str
    position: int | None = UNSET


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


@strawberry.input
class ChoiceOptionInput:
    key: str
    text: JSON = strawberry.field(description="Text per language: {en: ..., de: ...}.")


@strawberry.input
class QuestionInput:
    key: str
    type: str
    text: JSON = strawberry.field(description="Text per language: {en: ..., de: ...}.")
    required: bool | None = UNSET
    options: list[ChoiceOptionInput] | None = UNSET


@strawberry.input
class SurveyTargetInput:
    type: str
    journey_key: str | None = UNSET
    stage_key: str | None = UNSET
    touchpoint_key: str | None = UNSET


@strawberry.input(description="As POST /v1/surveys takes it.")
class CreateSurveyInput:
    key: str
    name: str
    kind: str
    questions: list[QuestionInput]
    status: str | None = UNSET
    target: SurveyTargetInput | None = UNSET
    default_language: str | None = UNSET


@strawberry.input(description="As POST /v1/responses takes it.")
class SubmitResponseInput:
    survey_id: strawberry.ID
    answers: JSON = strawberry.field(description="Question key → answer.")
    response_id: str | None = strawberry.field(default=UNSET, description="Your id: sent again, the stored one.")
    customer_external_id: str | None = UNSET
    journey_key: str | None = UNSET
    stage_key: str | None = UNSET
    touchpoint_key: str | None = UNSET
    channel: str | None = UNSET
    submitted_at: datetime | None = UNSET
    comment: str | None = UNSET
    language: str | None = UNSET
    metadata: JSON | None = UNSET


@strawberry.input(description="As PATCH /v1/cases/{id} takes it: move, assign or schedule a case.")
class UpdateCaseInput:
    status: str | None = UNSET
    assignee: str | None = UNSET
    due_at: datetime | None = UNSET


# Resolvers --------------------------------------------------------------------------------------


async def _create_persona(
    info: Info[Context, None], input: CreatePersonaInput, idempotency_key: IdempotencyKey = None
) -> Persona:
    return Persona.of(await _create(info, "createPersona", "journey", "/v1/personas", input, idempotency_key))


async def _create_touchpoint(
    info: Info[Context, None], input: CreateTouchpointInput, idempotency_key: IdempotencyKey = None
) -> CatalogTouchpoint:
    created = await _create(info, "createTouchpoint", "journey", "/v1/touchpoints", input, idempotency_key)
    return CatalogTouchpoint.of(created)


async def _create_journey(
    info: Info[Context, None], input: CreateJourneyInput, idempotency_key: IdempotencyKey = None
) -> Journey:
    return Journey.of(await _create(info, "createJourney", "journey", "/v1/journeys", input, idempotency_key))


async def _update_journey(info: Info[Context, None], id: strawberry.ID, input: UpdateJourneyInput) -> Journey:
    journey_id = as_uuid(str(id), "a journey")
    journey = await info.context.send("PATCH", "journey", f"/v1/journeys/{journey_id}", _body(input))
    _journey_changed(info)
    return Journey.of(journey)


async def _add_part(
    info: Info[Context, None], mutation: str, journey_id: str, part: str, data: Any, key: str | None
) -> JourneyPart:
    """POST a stage or step (`part`: stages, steps) to a journey."""
    journey = as_uuid(str(journey_id), "a journey")
    added = await _create(info, mutation, "journey", f"/v1/journeys/{journey}/{part}", data, key)
    _journey_changed(info)
    return JourneyPart(id=strawberry.ID(added["id"]), journey_id=journey)


async def _add_stage(
    info: Info[Context, None], journey_id: strawberry.ID, input: StageInput, idempotency_key: IdempotencyKey = None
) -> JourneyPart:
    return await _add_part(info, "addStage", journey_id, "stages", input, idempotency_key)


async def _add_step(
    info: Info[Context, None], journey_id: strawberry.ID, input: AddStepInput, idempotency_key: IdempotencyKey = None
) -> JourneyPart:
    return await _add_part(info, "addStep", journey_id, "steps", input, idempotency_key)


async def _create_survey(
    info: Info[Context, None], input: CreateSurveyInput, idempotency_key: IdempotencyKey = None
) -> Survey:
    return Survey.of(await _create(info, "createSurvey", "feedback", "/v1/surveys", input, idempotency_key))


async def _submit_response(
    info: Info[Context, None], input: SubmitResponseInput, idempotency_key: ResponseKey = None
) -> Response:
    response = await _create(info, "submitResponse", "feedback", "/v1/responses", input, idempotency_key, derive=False)
    return Response.of(response)


async def _update_case(info: Info[Context, None], id: strawberry.ID, input: UpdateCaseInput) -> Case:
    case = await info.context.send("PATCH", "feedback", f"/v1/cases/{as_uuid(str(id), 'a case')}", _body(input))
    return Case.of(case)


@strawberry.type
class Mutation:
    create_persona: Persona = strawberry.mutation(resolver=_create_persona, description="Create a persona.")
    create_touchpoint: CatalogTouchpoint = strawberry.mutation(
        resolver=_create_touchpoint, description="Add a touchpoint to the workspace's catalogue."
    )
    create_journey: Journey = strawberry.mutation(
        resolver=_create_journey, description="Create a journey (without `stages`: Need → Buy → Use)."
    )
    update_journey: Journey = strawberry.mutation(
        resolver=_update_journey, description="Change a journey (only the fields sent)."
    )
    add_stage: JourneyPart = strawberry.mutation(
        resolver=_add_stage, description="Add a stage to a journey (at `position`, or at the end)."
    )
    add_step: JourneyPart = strawberry.mutation(
        resolver=_add_step, description="Place a touchpoint in a stage of a journey."
    )
    create_survey: Survey = strawberry.mutation(resolver=_create_survey, description="Create a survey (version 1).")
    submit_response: Response = strawberry.mutation(
        resolver=_submit_response, description="Submit one survey response."
    )
    update_case: Case = strawberry.mutation(
        resolver=_update_case,
        description="Move a case (open → in_progress → closed; closed → open reopens), assign it, set its due date.",
    )
