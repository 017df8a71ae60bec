"""Responses (one customer's answers to one survey version) and the rollup projection built from them."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

import sqlalchemy as sa
import sqlmodel
from pydantic import AfterValidator, Field, StringConstraints
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import SQLModel

from services.common.timestamps import Timestamp
from services.common.validation import FREEFORM_MAX_BYTES, check_freeform_size
from services.common.vocabulary import Channel
from services.feedback.models._base import ExternalId, FeedbackTable, Key, Language, PublicShape, Shape

MetaKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
MetaValue = Annotated[str, StringConstraints(max_length=500)] | int | float | bool | None
MAX_BULK = 10_000


class NpsCategory(enum.StrEnum):
    promoter = "promoter"
    passive = "passive"
    detractor = "detractor"


def nps_category(score: int | None) -> NpsCategory | None:
    if score is None:
        return None
    return NpsCategory.promoter if score >= 9 else NpsCategory.passive if score >= 7 else NpsCategory.detractor


class ResponseCreate(Shape):
    survey_id: UUID
    response_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Your id for this response: sending it again returns the stored response instead of a copy.",
    )
    customer_external_id: ExternalId | None = Field(default=None, description="The CRM's id of the customer.")
    journey_key: Key | None = Field(default=None, description="Defaults to the survey's target.")
    stage_key: Key | None = Field(default=None, description="Defaults to the survey's target.")
    touchpoint_key: Key | None = Field(default=None, description="Defaults to the survey's target.")
    channel: Channel | None = None
    submitted_at: Timestamp | None = Field(default=None, description="Defaults to now.")
    answers: dict[str, Any] = Field(
        max_length=100, description="Question key → answer, checked against the survey version."
    )
    comment: str | None = Field(default=None, max_length=10_000)
    language: Language | None = Field(default=None, description="BCP 47 tag of the comment's language.")
    metadata: Annotated[dict[MetaKey, MetaValue], AfterValidator(check_freeform_size)] = Field(
        default_factory=dict,
        max_length=50,
        description="Free attributes (flat); metrics filter and group by them. At most 50 keys and "
        f"{FREEFORM_MAX_BYTES} bytes as compact JSON.",
    )

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "survey_id": "0196f3a2-6c1e-7cc0-9a1d-2b8f0e7d1a10",
                    "response_id": "crm-4711",
                    "customer_external_id": "C-1001",
                    "channel": "web",
                    "answers": {"recommend": 9, "reason": "Fast delivery"},
                    "comment": "Fast delivery, friendly staff.",
                    "language": "en",
                    "metadata": {"plan": "gold"},
                }
            ]
        }
    }


class ResponsesBulk(Shape):
    # An item that does not fit ResponseCreate stays a dict and is reported in its own result, so one
    # malformed item does not refuse the other 9,999.
    items: list[Annotated[ResponseCreate | dict[str, Any], Field(union_mode="left_to_right")]] = Field(
        min_length=1, max_length=MAX_BULK, description="Up to 10,000 responses, each as in POST /v1/responses."
    )


class ResponsePublic(PublicShape):
    id: UUID
    response_id: str | None
    survey_id: UUID
    survey_version: int
    customer_external_id: str | None
    journey_key: str | None
    stage_key: str | None
    touchpoint_key: str | None
    channel: Channel | None
    submitted_at: datetime
    answers: dict[str, Any]
    comment: str | None
    language: str | None
    metadata: dict[str, Any]
    nps: int | None = Field(description="Answer of the survey's first NPS question (0-10).")
    nps_category: NpsCategory | None
    csat: int | None = Field(description="Answer of the first rating question (1-5).")
    ces: int | None = Field(description="Answer of the first CES question (1-7).")
    sentiment: float | None = Field(default=None, description="−1..1, computed shortly after the write.")
    themes: list[str] | None = None
    created_at: datetime


class Response(FeedbackTable, table=True):
    __tablename__ = "response"
    __table_args__ = (
        sa.UniqueConstraint("workspace_id", "response_id", name="uq_response_response_id"),
        sa.Index("ix_response_submitted", "workspace_id", "submitted_at"),
        sa.Index("ix_response_customer", "workspace_id", "customer_external_id", "submitted_at"),
        sa.Index("ix_response_touchpoint", "workspace_id", "touchpoint_key", "submitted_at"),
        sa.Index("ix_response_unanalysed", "created_at", postgresql_where=sa.text("analysed_at IS NULL")),
    )
    id: UUID = sqlmodel.Field(primary_key=True)
    workspace_id: str
    # No foreign key (migration 0003): the write reads the survey in its transaction; surveys are never deleted.
    survey_id: UUID = sqlmodel.Field(index=True)
    survey_version: int
    response_id: str | None = None
    content_hash: str
    customer_external_id: str | None = None
    journey_key: str | None = None
    stage_key: str | None = None
    touchpoint_key: str | None = None
    channel: str | None = None
    submitted_at: datetime = sqlmodel.Field(sa_type=sa.DateTime(timezone=True))
    answers: dict[str, Any] = sqlmodel.Field(sa_type=JSONB)
    comment: str | None = None
    language: str | None = None
    metadata_: dict[str, Any] = sqlmodel.Field(sa_column=sa.Column("metadata", JSONB, nullable=False))
    nps: int | None = sqlmodel.Field(default=None, sa_type=sa.SmallInteger)
    csat: int | None = sqlmodel.Field(default=None, sa_type=sa.SmallInteger)
    ces: int | None = sqlmodel.Field(default=None, sa_type=sa.SmallInteger)
    sentiment: float | None = None
    themes: list[str] | None = sqlmodel.Field(default=None, sa_type=JSONB)
    analysed_at: datetime | None = sqlmodel.Field(default=None, sa_type=sa.DateTime(timezone=True))
    created_at: datetime = sqlmodel.Field(sa_type=sa.DateTime(timezone=True))


class RollupCounts(SQLModel):
    """The counts both rollup levels keep (sums, so days and groups add up)."""

    nps_n: int = sqlmodel.Field(default=0, sa_type=sa.BigInteger)
    promoters: int = sqlmodel.Field(default=0, sa_type=sa.BigInteger)
    passives: int = sqlmodel.Field(default=0, sa_type=sa.BigInteger)
    detractors: int = sqlmodel.Field(default=0, sa_type=sa.BigInteger)
    csat_n: int = sqlmodel.Field(default=0, sa_type=sa.BigInteger)
    csat_satisfied: int = sqlmodel.Field(default=0, sa_type=sa.BigInteger)
    ces_n: int = sqlmodel.Field(default=0, sa_type=sa.BigInteger)
    ces_sum: int = sqlmodel.Field(default=0, sa_type=sa.BigInteger)
    ces_sumsq: int = sqlmodel.Field(default=0, sa_type=sa.BigInteger)


class ResponseRollup(RollupCounts, FeedbackTable, table=True):
    """Counts per workspace × survey × journey × stage × touchpoint × day ('' = no key): a projection of
    `feedback.response.submitted` (consumer `feedback-projections`), complete up to its `as_of`."""

    __tablename__ = "response_rollup"
    workspace_id: str = sqlmodel.Field(primary_key=True)
    survey_id: UUID = sqlmodel.Field(primary_key=True)
    journey_key: str = sqlmodel.Field(primary_key=True)
    stage_key: str = sqlmodel.Field(primary_key=True)
    touchpoint_key: str = sqlmodel.Field(primary_key=True)
    day: date = sqlmodel.Field(primary_key=True)


class ResponseRollupMonth(RollupCounts, FeedbackTable, table=True):
    """The same counts per calendar month (UTC), by the same projection: history-wide queries read
    touchpoints × months rows instead of touchpoints × days."""

    __tablename__ = "response_rollup_month"
    workspace_id: str = sqlmodel.Field(primary_key=True)
    survey_id: UUID = sqlmodel.Field(primary_key=True)
    journey_key: str = sqlmodel.Field(primary_key=True)
    stage_key: str = sqlmodel.Field(primary_key=True)
    touchpoint_key: str = sqlmodel.Field(primary_key=True)
    month: date = sqlmodel.Field(primary_key=True)
