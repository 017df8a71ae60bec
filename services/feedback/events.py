"""Events the feedback service publishes (subject -> payload), past tense."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel

from services.feedback.models import CasePublic, ResponsePublic, SurveyPublic


class CommentAnalysed(BaseModel):
    response_id: UUID
    survey_id: UUID
    journey_key: str | None
    stage_key: str | None
    touchpoint_key: str | None
    language: str | None
    sentiment: float
    themes: list[str]


RESPONSE_SUBMITTED = "feedback.response.submitted"
CASE_OPENED = "feedback.case.opened"
CASE_UPDATED = "feedback.case.updated"
CASE_CLOSED = "feedback.case.closed"
COMMENT_ANALYSED = "feedback.comment.analysed"

PUBLISHED: dict[str, type[BaseModel]] = {
    "feedback.survey.created": SurveyPublic,
    "feedback.survey.updated": SurveyPublic,
    RESPONSE_SUBMITTED: ResponsePublic,
    CASE_OPENED: CasePublic,
    CASE_UPDATED: CasePublic,
    CASE_CLOSED: CasePublic,
    COMMENT_ANALYSED: CommentAnalysed,
}
