"""Surveys and their versions."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Path, Query, Response

from services.common.db import SessionDep
from services.common.errors import problems
from services.common.idempotency import IdempotencyDep
from services.common.outbox import emit
from services.common.pagination import CursorQuery, LimitQuery, Page
from services.feedback.api._deps import Reader, Writer, make_router
from services.feedback.events import SURVEY_CREATED, SURVEY_UPDATED
from services.feedback.models import (
    SurveyCreate,
    SurveyKind,
    SurveyPublic,
    SurveyStatus,
    SurveyUpdate,
    SurveyVersionPublic,
)
from services.feedback.store import surveys

SurveyId = Annotated[UUID, Path(description="The survey's id.")]
router = make_router()


@router.post("/surveys", status_code=201, response_model=SurveyPublic, tags=["surveys"], responses=problems(409))
async def create_survey(caller: Writer, idem: IdempotencyDep, session: SessionDep, body: SurveyCreate) -> Response:
    """Create a survey (version 1)."""
    survey = await surveys.create_survey(session, workspace_id=caller.workspace_id, data=body)
    await emit(session, workspace_id=caller.workspace_id, type=SURVEY_CREATED, data=survey,
               aggregate_id=survey.id, version=survey.revision)  # fmt: skip
    return await idem.respond(survey)


@router.get("/surveys", tags=["surveys"])
async def list_surveys(
    caller: Reader,
    session: SessionDep,
    status: Annotated[SurveyStatus | None, Query()] = None,
    kind: Annotated[SurveyKind | None, Query()] = None,
    touchpoint: Annotated[
        str | None, Query(max_length=80, description="Surveys targeting this touchpoint key.")
    ] = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> Page[SurveyPublic]:
    """List surveys."""
    return await surveys.list_surveys(
        session,
        workspace_id=caller.workspace_id,
        status=status,
        kind=kind,
        touchpoint_key=touchpoint,
        cursor=cursor,
        limit=limit,
    )


@router.get("/surveys/{survey_id:uuid}", tags=["surveys"], responses=problems(404))
async def get_survey(caller: Reader, session: SessionDep, survey_id: SurveyId) -> SurveyPublic:
    """Get a survey with its current questions."""
    return await surveys.get_survey(session, workspace_id=caller.workspace_id, survey_id=survey_id)


@router.patch("/surveys/{survey_id:uuid}", tags=["surveys"], responses=problems(404))
async def update_survey(caller: Writer, session: SessionDep, survey_id: SurveyId, body: SurveyUpdate) -> SurveyPublic:
    """Change a survey; new questions on an active survey with responses become a new version."""
    survey, _ = await surveys.update_survey(session, workspace_id=caller.workspace_id, survey_id=survey_id, data=body)
    await emit(session, workspace_id=caller.workspace_id, type=SURVEY_UPDATED, data=survey,
               aggregate_id=survey.id, version=survey.revision)  # fmt: skip
    return survey


@router.get("/surveys/{survey_id:uuid}/versions", tags=["surveys"], responses=problems(404))
async def list_survey_versions(
    caller: Reader, session: SessionDep, survey_id: SurveyId, cursor: CursorQuery = None, limit: LimitQuery = 50
) -> Page[SurveyVersionPublic]:
    """The versions of a survey's questions, oldest first."""
    return await surveys.list_versions(
        session, workspace_id=caller.workspace_id, survey_id=survey_id, cursor=cursor, limit=limit
    )
