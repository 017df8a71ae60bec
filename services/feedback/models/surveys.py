"""Surveys, their typed questions and their versions."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Self
from uuid import UUID

import sqlalchemy as sa
import sqlmodel
from pydantic import Field, StrictBool, StringConstraints, model_validator
from sqlalchemy.dialects.postgresql import JSONB
from uuid_utils.compat import uuid7

from services.common.patch import NotNull
from services.feedback.models._base import (
    KEY_HELP,
    KEY_PATTERN,
    FeedbackTable,
    Key,
    Language,
    Patch,
    PublicShape,
    Shape,
    enum_type,
    now_column,
    version_column,
)

Text = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
Texts = Annotated[
    dict[Language, Text], Field(min_length=1, max_length=20, description="Text per language (BCP 47 tag → text).")
]


class SurveyKind(enum.StrEnum):
    nps = "nps"
    csat = "csat"
    ces = "ces"
    custom = "custom"


class SurveyStatus(enum.StrEnum):
    draft = "draft"
    active = "active"
    closed = "closed"


class TargetType(enum.StrEnum):
    journey = "journey"
    stage = "stage"
    touchpoint = "touchpoint"
    relational = "relational"


class QuestionType(enum.StrEnum):
    nps = "nps"  # 0-10
    rating = "rating"  # 1-5 (CSAT)
    ces = "ces"  # 1-7
    text = "text"
    single_choice = "single_choice"
    multi_choice = "multi_choice"
    boolean = "boolean"


CHOICE_TYPES = {QuestionType.single_choice, QuestionType.multi_choice}
SCALES: dict[QuestionType, tuple[int, int]] = {
    QuestionType.nps: (0, 10),
    QuestionType.rating: (1, 5),
    QuestionType.ces: (1, 7),
}
KIND_QUESTION = {
    SurveyKind.nps: QuestionType.nps,
    SurveyKind.csat: QuestionType.rating,
    SurveyKind.ces: QuestionType.ces,
}


class ChoiceOption(Shape):
    key: Key
    text: Texts


class Question(Shape):
    key: str = Field(pattern=KEY_PATTERN, description=KEY_HELP)
    type: QuestionType
    required: StrictBool = False
    text: Texts
    options: list[ChoiceOption] = Field(default_factory=list, max_length=100, description="Choice questions only.")

    @model_validator(mode="after")
    def _options_fit_type(self) -> Self:
        if self.type in CHOICE_TYPES:
            if len(self.options) < 2:
                raise ValueError(f"a {self.type} question needs at least two options")
            keys = [o.key for o in self.options]
            if len(set(keys)) != len(keys):
                raise ValueError("option keys must be unique within a question")
        elif self.options:
            raise ValueError(f"a {self.type} question has no options")
        return self


class SurveyTarget(Shape):
    type: TargetType = TargetType.relational
    journey_key: Key | None = None
    stage_key: Key | None = None
    touchpoint_key: Key | None = None

    @model_validator(mode="after")
    def _keys_fit_type(self) -> Self:
        need = {
            TargetType.journey: {"journey_key"},
            TargetType.stage: {"journey_key", "stage_key"},
            TargetType.touchpoint: {"touchpoint_key"},
            TargetType.relational: set(),
        }[self.type]
        given = {k for k in ("journey_key", "stage_key", "touchpoint_key") if getattr(self, k) is not None}
        if need - given:
            raise ValueError(f"a {self.type} target needs {', '.join(sorted(need - given))}")
        if self.type == TargetType.relational and given:
            raise ValueError("a relational (overall) survey targets no journey, stage or touchpoint")
        return self


Questions = Annotated[list[Question], Field(min_length=1, max_length=100)]


def check_questions(kind: SurveyKind, questions: list[Question]) -> None:
    keys = [q.key for q in questions]
    if len(set(keys)) != len(keys):
        raise ValueError("question keys must be unique within a survey")
    wanted = KIND_QUESTION.get(kind)
    if wanted is not None and not any(q.type == wanted for q in questions):
        raise ValueError(f"a {kind} survey needs a question of type {wanted}")


class SurveyCreate(Shape):
    key: str = Field(pattern=KEY_PATTERN, description=KEY_HELP)
    name: str = Field(min_length=1, max_length=200)
    kind: SurveyKind
    status: SurveyStatus = SurveyStatus.draft
    target: SurveyTarget = Field(default_factory=SurveyTarget)
    default_language: Language = "en"
    questions: Questions

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "key": "after-delivery",
                    "name": "After delivery",
                    "kind": "nps",
                    "status": "active",
                    "target": {"type": "touchpoint", "touchpoint_key": "parcel-delivery"},
                    "questions": [
                        {
                            "key": "recommend",
                            "type": "nps",
                            "required": True,
                            "text": {"en": "How likely are you to recommend us?", "de": "Wie wahrscheinlich ..."},
                        },
                        {"key": "reason", "type": "text", "text": {"en": "Why?", "de": "Warum?"}},
                    ],
                }
            ]
        }
    }

    @model_validator(mode="after")
    def _questions_fit_kind(self) -> Self:
        check_questions(self.kind, self.questions)
        return self


class SurveyUpdate(Patch):
    """Changing the questions of an active survey that has responses creates a new version. No field
    can be null: leave it out to keep it."""

    name: Annotated[str | None, NotNull] = Field(default=None, min_length=1, max_length=200)
    status: Annotated[SurveyStatus | None, NotNull] = None
    default_language: Annotated[Language | None, NotNull] = None
    questions: Annotated[Questions | None, NotNull] = None


class SurveyPublic(PublicShape):
    id: UUID
    key: str
    name: str
    kind: SurveyKind
    status: SurveyStatus
    target: SurveyTarget
    default_language: str
    version: int = Field(
        description="The current questionnaire version; responses keep the version they answered. Changing the "
        "questions of a survey that has responses makes a new one."
    )
    revision: int = Field(
        description="The survey's own version as an aggregate: it increases with every change (name, status, "
        "questions), and its events carry it, so a consumer can drop an outdated one."
    )
    questions: list[Question]
    created_at: datetime
    updated_at: datetime


class SurveyVersionPublic(PublicShape):
    survey_id: UUID
    version: int
    questions: list[Question]
    created_at: datetime


class Survey(FeedbackTable, table=True):
    __tablename__ = "survey"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "key", name="uq_survey_key"),)
    id: UUID = sqlmodel.Field(default_factory=uuid7, primary_key=True)
    workspace_id: str = sqlmodel.Field(index=True)
    key: str
    name: str
    kind: SurveyKind = sqlmodel.Field(sa_type=enum_type(SurveyKind, "survey_kind"))
    status: SurveyStatus = sqlmodel.Field(sa_type=enum_type(SurveyStatus, "survey_status"))
    target_type: TargetType = sqlmodel.Field(sa_type=enum_type(TargetType, "target_type"))
    journey_key: str | None = None
    stage_key: str | None = None
    touchpoint_key: str | None = None
    default_language: str = "en"
    version: int = 1  # the questionnaire version (survey_version)
    revision: int = version_column()  # the aggregate's version (events)
    created_at: datetime = sqlmodel.Field(sa_column=now_column())
    updated_at: datetime = sqlmodel.Field(sa_column=now_column())


class SurveyVersion(FeedbackTable, table=True):
    __tablename__ = "survey_version"
    survey_id: UUID = sqlmodel.Field(foreign_key="survey.id", ondelete="CASCADE", primary_key=True)
    version: int = sqlmodel.Field(primary_key=True)
    workspace_id: str
    questions: list[dict[str, Any]] = sqlmodel.Field(sa_type=JSONB)
    created_at: datetime = sqlmodel.Field(sa_column=now_column())
