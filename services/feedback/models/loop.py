"""The closed loop: rules that open follow-up cases, the cases and their history."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import sqlalchemy as sa
import sqlmodel
from pydantic import Field, StrictBool, StrictInt
from sqlalchemy.dialects.postgresql import JSONB
from uuid_utils.compat import uuid7

from services.common.patch import NotNull
from services.common.timestamps import Timestamp
from services.feedback.models._base import (
    VERSION_HELP,
    FeedbackTable,
    Key,
    Patch,
    PublicShape,
    Shape,
    enum_type,
    now_column,
    version_column,
)


class Metric(enum.StrEnum):
    nps = "nps"
    csat = "csat"
    ces = "ces"


class CaseStatus(enum.StrEnum):
    open = "open"
    in_progress = "in_progress"
    closed = "closed"


# Allowed moves; a closed case can be reopened.
TRANSITIONS: dict[CaseStatus, set[CaseStatus]] = {
    CaseStatus.open: {CaseStatus.in_progress, CaseStatus.closed},
    CaseStatus.in_progress: {CaseStatus.open, CaseStatus.closed},
    CaseStatus.closed: {CaseStatus.open},
}


class RuleFields(Shape):
    name: str = Field(min_length=1, max_length=200)
    enabled: StrictBool = True
    priority: StrictInt = Field(
        default=100, ge=0, le=10_000, description="Lower is checked first; one case per response."
    )
    survey_id: UUID | None = Field(default=None, description="Only responses to this survey.")
    touchpoint_key: Key | None = Field(default=None, description="Only responses about this touchpoint.")
    metric: Metric | None = Field(default=Metric.nps, description="Score to compare; null for a theme-only rule.")
    max_score: StrictInt | None = Field(default=6, ge=0, le=10, description="Opens a case when the score is ≤ this.")
    theme: Key | None = Field(
        default=None, description="Opens a case when the comment has this theme (checked after comment analysis)."
    )
    assignee: str | None = Field(default=None, max_length=200)
    due_in_hours: StrictInt | None = Field(default=48, ge=1, le=24 * 365)


class RuleCreate(RuleFields):
    pass


class RuleUpdate(Patch):
    name: Annotated[str | None, NotNull] = Field(default=None, min_length=1, max_length=200)
    enabled: Annotated[StrictBool | None, NotNull] = None
    priority: Annotated[StrictInt | None, NotNull] = Field(default=None, ge=0, le=10_000)
    survey_id: UUID | None = Field(default=None, description="null: responses to any survey.")
    touchpoint_key: Key | None = Field(default=None, description="null: responses about any touchpoint.")
    metric: Metric | None = Field(default=None, description="null (with max_score null): a theme-only rule.")
    max_score: StrictInt | None = Field(default=None, ge=0, le=10, description="null with metric null.")
    theme: Key | None = Field(default=None, description="null: no theme condition.")
    assignee: str | None = Field(default=None, max_length=200, description="null: cases opened unassigned.")
    due_in_hours: StrictInt | None = Field(
        default=None, ge=1, le=24 * 365, description="null: cases without a due date."
    )


class RulePublic(RuleFields):
    model_config = {"extra": "ignore", "from_attributes": True}
    id: UUID
    version: int = Field(description=VERSION_HELP)
    created_at: datetime
    updated_at: datetime


class LoopRule(FeedbackTable, table=True):
    __tablename__ = "loop_rule"
    id: UUID = sqlmodel.Field(default_factory=uuid7, primary_key=True)
    workspace_id: str = sqlmodel.Field(index=True)
    name: str
    enabled: bool = True
    priority: int = 100
    survey_id: UUID | None = None
    touchpoint_key: str | None = None
    metric: str | None = None
    max_score: int | None = None
    theme: str | None = None
    assignee: str | None = None
    due_in_hours: int | None = None
    version: int = version_column()
    created_at: datetime = sqlmodel.Field(sa_column=now_column())
    updated_at: datetime = sqlmodel.Field(sa_column=now_column())


class CaseCreate(Shape):
    """A case opened by hand (rules open most cases)."""

    response_id: UUID = Field(description="The response (its `id`) the case follows up.")
    assignee: str | None = Field(default=None, max_length=200)
    due_at: Timestamp | None = None
    note: str | None = Field(default=None, max_length=10_000)


class CaseUpdate(Patch):
    status: Annotated[CaseStatus | None, NotNull] = None
    assignee: str | None = Field(default=None, max_length=200, description="null: unassigned.")
    due_at: Timestamp | None = Field(default=None, description="null: no due date.")


class NoteCreate(Shape):
    text: str = Field(min_length=1, max_length=10_000)


class CaseEntry(PublicShape):
    at: datetime
    actor: str
    action: str
    changes: dict[str, Any]
    note: str | None


class CasePublic(PublicShape):
    id: UUID = Field(description="The id of the response it follows up (one case per response).")
    response_id: UUID
    rule_id: UUID | None
    rule_name: str | None
    reason: str
    status: CaseStatus
    assignee: str | None
    due_at: datetime | None
    survey_id: UUID
    customer_external_id: str | None
    touchpoint_key: str | None
    version: int = Field(description=VERSION_HELP)
    created_at: datetime
    updated_at: datetime


class CaseDetail(CasePublic):
    history: list[CaseEntry]


class FollowUpCase(FeedbackTable, table=True):
    __tablename__ = "follow_up_case"
    __table_args__ = (
        # One case per response: a redelivered or re-evaluated response never opens a second one.
        sa.UniqueConstraint("workspace_id", "response_id", name="uq_case_response"),
        sa.Index("ix_case_status", "workspace_id", "status"),
        sa.Index("ix_case_customer", "workspace_id", "customer_external_id", "id"),  # GET /v1/cases?customer=
    )
    # The response's id: the cases projection opens the same case however often it is rebuilt.
    id: UUID = sqlmodel.Field(primary_key=True)
    workspace_id: str
    # No foreign key (migration 0003): written with its response, or for a response read before.
    response_id: UUID
    rule_id: UUID | None = sqlmodel.Field(default=None, foreign_key="loop_rule.id", ondelete="SET NULL")
    rule_name: str | None = None
    reason: str
    status: CaseStatus = sqlmodel.Field(sa_type=enum_type(CaseStatus, "case_status"))
    assignee: str | None = None
    due_at: datetime | None = sqlmodel.Field(default=None, sa_type=sa.DateTime(timezone=True))
    survey_id: UUID
    customer_external_id: str | None = None
    touchpoint_key: str | None = None
    version: int = version_column()
    created_at: datetime = sqlmodel.Field(sa_column=now_column())
    updated_at: datetime = sqlmodel.Field(sa_column=now_column())


class CaseHistory(FeedbackTable, table=True):
    __tablename__ = "case_history"
    id: int | None = sqlmodel.Field(default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True))
    # No foreign key (migration 0003): written with its case, or for a case locked by the change.
    case_id: UUID = sqlmodel.Field(index=True)
    workspace_id: str
    at: datetime = sqlmodel.Field(sa_column=now_column())
    actor: str
    action: str
    changes: dict[str, Any] = sqlmodel.Field(default_factory=dict, sa_type=JSONB)
    note: str | None = None
