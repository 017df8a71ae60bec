"""The feedback service's writes: surveys, responses and cases."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from gateway.catalog import as_uuid
from gateway.feedback import Case, Response, Survey
from gateway.mutations.common import UNSET, IdempotencyKey, as_body, create
from gateway.schema import Context

ResponseKey = Annotated[
    str | None,
    strawberry.argument(
        description="Any unique string; the same key and response again return the first answer. Omitted: no key "
        "(identical answers of two people are two responses), but a `responseId` makes a retry safe too."
    ),
]


# Inputs: the REST bodies' fields (snake_case here, camelCase in the schema); the service checks them -------


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


@strawberry.input(
    description="As PATCH /v1/surveys/{id} takes it: only the fields sent change; none can be null (leave it out "
    "to keep it). New questions on an active survey with responses become a new version."
)
class UpdateSurveyInput:
    name: str | None = UNSET
    status: str | None = UNSET
    default_language: str | None = UNSET
    questions: list[QuestionInput] | None = UNSET


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


async def _create_survey(
    info: Info[Context, None], input: CreateSurveyInput, idempotency_key: IdempotencyKey = None
) -> Survey:
    return Survey.of(await create(info, "createSurvey", "feedback", "/v1/surveys", input, idempotency_key))


async def _update_survey(info: Info[Context, None], id: strawberry.ID, input: UpdateSurveyInput) -> Survey:
    path = f"/v1/surveys/{as_uuid(str(id), 'a survey')}"
    return Survey.of(await info.context.send("PATCH", "feedback", path, as_body(input)))


async def _submit_response(
    info: Info[Context, None], input: SubmitResponseInput, idempotency_key: ResponseKey = None
) -> Response:
    response = await create(info, "submitResponse", "feedback", "/v1/responses", input, idempotency_key, derive=False)
    return Response.of(response)


async def _update_case(info: Info[Context, None], id: strawberry.ID, input: UpdateCaseInput) -> Case:
    case = await info.context.send("PATCH", "feedback", f"/v1/cases/{as_uuid(str(id), 'a case')}", as_body(input))
    return Case.of(case)


@strawberry.type
class FeedbackMutation:
    create_survey: Survey = strawberry.mutation(resolver=_create_survey, description="Create a survey (version 1).")
    update_survey: Survey = strawberry.mutation(
        resolver=_update_survey,
        description="Change a survey (only the fields sent); new questions on an active survey with responses "
        "become a new version, the answers given keep theirs.",
    )
    submit_response: Response = strawberry.mutation(
        resolver=_submit_response, description="Submit one survey response."
    )
    update_case: Case = strawberry.mutation(
        resolver=_update_case,
        description="Move a case (open → in_progress → closed; closed → open reopens), assign it, set its due date.",
    )
