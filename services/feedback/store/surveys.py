"""Surveys and their versions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.common.errors import NotFound, Unprocessable
from services.common.pagination import Page, decode_cursor, keyset, page_of
from services.feedback.models import (
    Question,
    Response,
    Survey,
    SurveyCreate,
    SurveyKind,
    SurveyPublic,
    SurveyStatus,
    SurveyTarget,
    SurveyUpdate,
    SurveyVersion,
    SurveyVersionPublic,
    check_questions,
)
from services.feedback.store._rows import insert_row

_questions = TypeAdapter(list[Question])
_LOCK_VERSION = sa.text("SELECT 1 FROM survey_version WHERE survey_id = :s AND version = :v FOR UPDATE")


@dataclass(frozen=True, slots=True)
class SurveyForIngest:
    id: UUID
    key: str
    kind: SurveyKind
    status: SurveyStatus
    version: int
    journey_key: str | None
    stage_key: str | None
    touchpoint_key: str | None
    questions: list[Question]


def public(survey: Survey, questions: list[Question]) -> SurveyPublic:
    return SurveyPublic(
        id=survey.id,
        key=survey.key,
        name=survey.name,
        kind=survey.kind,
        status=survey.status,
        target=SurveyTarget(
            type=survey.target_type,
            journey_key=survey.journey_key,
            stage_key=survey.stage_key,
            touchpoint_key=survey.touchpoint_key,
        ),
        default_language=survey.default_language,
        version=survey.version,
        revision=survey.revision,
        questions=questions,
        created_at=survey.created_at,
        updated_at=survey.updated_at,
    )


async def create_survey(session: AsyncSession, *, workspace_id: str, data: SurveyCreate) -> SurveyPublic:
    survey = Survey(  # type: ignore[call-arg]  # timestamps: server defaults
        workspace_id=workspace_id,
        key=data.key,
        name=data.name,
        kind=data.kind,
        status=data.status,
        target_type=data.target.type,
        journey_key=data.target.journey_key,
        stage_key=data.target.stage_key,
        touchpoint_key=data.target.touchpoint_key,
        default_language=data.default_language,
        version=1,
        revision=1,
    )
    await insert_row(session, survey, what="survey", key=f"key {data.key!r}")
    session.add(
        SurveyVersion(  # type: ignore[call-arg]
            survey_id=survey.id,
            version=1,
            workspace_id=workspace_id,
            questions=[q.model_dump(mode="json") for q in data.questions],
        )
    )
    await session.flush()
    await session.refresh(survey)
    return public(survey, data.questions)


async def _get(session: AsyncSession, *, workspace_id: str, survey_id: UUID, lock: bool = False) -> Survey:
    stmt = sa.select(Survey).where(Survey.id == survey_id, Survey.workspace_id == workspace_id)  # type: ignore[arg-type]
    if lock:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"No survey with id {survey_id} in this workspace.")
    return row


async def _questions_of(session: AsyncSession, survey: Survey) -> list[Question]:
    raw = (
        await session.execute(
            sa.select(col(SurveyVersion.questions)).where(
                SurveyVersion.survey_id == survey.id,  # type: ignore[arg-type]
                SurveyVersion.version == survey.version,  # type: ignore[arg-type]
            )
        )
    ).scalar_one()
    return _questions.validate_python(raw)


async def get_survey(session: AsyncSession, *, workspace_id: str, survey_id: UUID) -> SurveyPublic:
    survey = await _get(session, workspace_id=workspace_id, survey_id=survey_id)
    return public(survey, await _questions_of(session, survey))


async def list_surveys(
    session: AsyncSession,
    *,
    workspace_id: str,
    status: SurveyStatus | None,
    kind: SurveyKind | None,
    touchpoint_key: str | None,
    cursor: str | None,
    limit: int,
) -> Page[SurveyPublic]:
    stmt = sa.select(Survey, col(SurveyVersion.questions)).join(
        SurveyVersion,
        sa.and_(SurveyVersion.survey_id == Survey.id, SurveyVersion.version == Survey.version),  # type: ignore[arg-type]
    )
    stmt = stmt.where(Survey.workspace_id == workspace_id)  # type: ignore[arg-type]
    if status:
        stmt = stmt.where(Survey.status == status)  # type: ignore[arg-type]
    if kind:
        stmt = stmt.where(Survey.kind == kind)  # type: ignore[arg-type]
    if touchpoint_key:
        stmt = stmt.where(Survey.touchpoint_key == touchpoint_key)  # type: ignore[arg-type]
    rows = (await session.execute(keyset(stmt, Survey.id, cursor=cursor, limit=limit))).all()
    items = [public(s, _questions.validate_python(q)) for s, q in rows]
    return page_of(items, limit=limit, id_of=lambda s: s.id)


async def update_survey(
    session: AsyncSession, *, workspace_id: str, survey_id: UUID, data: SurveyUpdate
) -> tuple[SurveyPublic, bool]:
    """Apply the change; (survey, whether a new version was created)."""
    survey = await _get(session, workspace_id=workspace_id, survey_id=survey_id, lock=True)
    changes = data.model_dump(exclude_unset=True)  # none is null (NotNull)
    if data.status == SurveyStatus.draft and survey.status != SurveyStatus.draft:
        raise Unprocessable(
            f"A survey that was {survey.status} cannot go back to draft; close it instead.",
            errors=[{"field": "status", "message": "draft is only the state before activation"}],
        )
    new_version = False
    if data.questions is not None:
        try:
            check_questions(survey.kind, data.questions)
        except ValueError as exc:
            raise Unprocessable(str(exc), errors=[{"field": "questions", "message": str(exc)}]) from None
        # Locks out the response writes of this version (they hold it FOR KEY SHARE) before asking
        # whether it has answers: a response written meanwhile is either counted or waits for us.
        await session.execute(_LOCK_VERSION, {"s": survey.id, "v": survey.version})
        answered = (
            await session.execute(
                sa.select(sa.literal(1))
                .where(Response.survey_id == survey.id, Response.survey_version == survey.version)  # type: ignore[arg-type]
                .limit(1)
            )
        ).first() is not None
        questions_json = [q.model_dump(mode="json") for q in data.questions]
        if survey.status != SurveyStatus.draft and answered:
            # Responses keep the version they answered: the change becomes a new version.
            survey.version += 1
            session.add(
                SurveyVersion(  # type: ignore[call-arg]
                    survey_id=survey.id, version=survey.version, workspace_id=workspace_id, questions=questions_json
                )
            )
            new_version = True
        else:
            await session.execute(
                sa.update(SurveyVersion)
                .where(SurveyVersion.survey_id == survey.id, SurveyVersion.version == survey.version)  # type: ignore[arg-type]
                .values(questions=questions_json)
            )
    for field in ("name", "status", "default_language"):
        if field in changes:
            setattr(survey, field, changes[field])
    survey.revision += 1
    survey.updated_at = sa.func.now()  # type: ignore[assignment]
    await session.flush()
    await session.refresh(survey)
    return public(survey, await _questions_of(session, survey)), new_version


async def list_versions(
    session: AsyncSession, *, workspace_id: str, survey_id: UUID, cursor: str | None, limit: int
) -> Page[SurveyVersionPublic]:
    """A page of the survey's versions, by number. The cursor carries the last number as the kit's
    UUID cursor (`UUID(int=n)`), so it reads like every other cursor."""
    await _get(session, workspace_id=workspace_id, survey_id=survey_id)
    stmt = sa.select(SurveyVersion).where(SurveyVersion.survey_id == survey_id)  # type: ignore[arg-type]
    if cursor is not None:
        stmt = stmt.where(SurveyVersion.version > decode_cursor(cursor).int)  # type: ignore[arg-type]
    stmt = stmt.order_by(SurveyVersion.version).limit(limit + 1)  # type: ignore[arg-type]
    rows = [SurveyVersionPublic.model_validate(r) for r in (await session.execute(stmt)).scalars().all()]
    return page_of(rows, limit=limit, id_of=lambda v: UUID(int=v.version))


# The surveys a response write checks its answers against, read in the write's transaction. The
# version row is held FOR KEY SHARE until the write commits, so an in-place edit of the questions
# (which locks that row first, `update_survey`) cannot pass between the check and the commit. It is
# the version row, not the survey's, that is locked: a locking read that waited for an edit gets the
# edited row it locked, but the other tables of its join as its snapshot saw them.
SURVEYS_FOR_INGEST = sa.text(
    "SELECT s.id, s.key, s.kind, s.status, s.version, s.journey_key, s.stage_key, s.touchpoint_key, "
    "v.questions FROM survey s JOIN survey_version v ON v.survey_id = s.id AND v.version = s.version "
    "WHERE s.workspace_id = :w AND s.id = ANY(:ids) FOR KEY SHARE OF v"
)


async def surveys_for_ingest(
    session: AsyncSession, *, workspace_id: str, survey_ids: list[UUID]
) -> dict[UUID, SurveyForIngest]:
    rows = await session.execute(SURVEYS_FOR_INGEST, {"w": workspace_id, "ids": survey_ids})
    return {survey.id: survey for survey in (survey_for_ingest(r._mapping) for r in rows)}


def survey_for_ingest(row: Mapping[Any, Any]) -> SurveyForIngest:
    """A row of SURVEYS_FOR_INGEST (from SQLAlchemy or the driver) as what ingest checks against."""
    return SurveyForIngest(
        id=UUID(str(row["id"])),
        key=row["key"],
        kind=SurveyKind(row["kind"]),
        status=SurveyStatus(row["status"]),
        version=row["version"],
        journey_key=row["journey_key"],
        stage_key=row["stage_key"],
        touchpoint_key=row["touchpoint_key"],
        questions=_questions.validate_python(row["questions"]),
    )
