"""The journey model: personas, touchpoints, journeys, stages and steps."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

import sqlalchemy as sa
import sqlmodel
from pydantic import ConfigDict, Field, StrictBool, StrictInt
from sqlalchemy.dialects.postgresql import JSONB
from uuid_utils.compat import uuid7

from services.common.patch import NotNull
from services.common.vocabulary import Channel
from services.journey.models._base import (
    KEY_HELP,
    KEY_PATTERN,
    VERSION_HELP,
    JourneyTable,
    Money,
    Patch,
    Shape,
    now_column,
    version_column,
)
from services.journey.rules import RuleCondition


class JourneyStatus(enum.StrEnum):
    draft = "draft"
    active = "active"
    retired = "retired"


class JourneyState(enum.StrEnum):
    current = "current"
    target = "target"


# Personas ---------------------------------------------------------------------------------------


class PersonaRule(Shape):
    name: str = Field(min_length=1, max_length=120, description="Shown when this rule assigns a customer.")
    when: RuleCondition


class PersonaFields(Shape):
    name: str = Field(min_length=1, max_length=200)
    role: str | None = Field(default=None, max_length=200)
    background: str | None = Field(default=None, max_length=5000)
    needs: list[str] = Field(default_factory=list, max_length=50)
    goals: list[str] = Field(default_factory=list, max_length=50)
    pains: list[str] = Field(default_factory=list, max_length=50)
    priority: StrictInt = Field(default=100, ge=0, le=10_000, description="Lower wins when several personas match.")
    rules: list[PersonaRule] = Field(default_factory=list, max_length=50)


class PersonaCreate(PersonaFields):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "key": "price-conscious-switcher",
                    "name": "Price-conscious switcher",
                    "role": "Tenant, 34",
                    "needs": ["a cheaper tariff without surprises"],
                    "goals": ["save 150 EUR a year"],
                    "pains": ["hidden bonus conditions"],
                    "priority": 10,
                    "rules": [
                        {
                            "name": "comes from portals",
                            "when": {
                                "all": [
                                    {"attribute": "acquisition_channel", "op": "eq", "value": "portal"},
                                    {"attribute": "age", "op": "lt", "value": 40},
                                ]
                            },
                        }
                    ],
                }
            ]
        }
    )

    key: str = Field(pattern=KEY_PATTERN, description=KEY_HELP)


class PersonaUpdate(Patch):
    key: Annotated[str | None, NotNull] = Field(default=None, pattern=KEY_PATTERN)
    name: Annotated[str | None, NotNull] = Field(default=None, min_length=1, max_length=200)
    role: str | None = Field(default=None, max_length=200)
    background: str | None = Field(default=None, max_length=5000)
    needs: Annotated[list[str] | None, NotNull] = Field(default=None, max_length=50)
    goals: Annotated[list[str] | None, NotNull] = Field(default=None, max_length=50)
    pains: Annotated[list[str] | None, NotNull] = Field(default=None, max_length=50)
    priority: Annotated[StrictInt | None, NotNull] = Field(default=None, ge=0, le=10_000)
    rules: Annotated[list[PersonaRule] | None, NotNull] = Field(default=None, max_length=50)


class PersonaPublic(PersonaCreate):
    model_config = ConfigDict(extra="ignore", from_attributes=True, json_schema_extra=None)
    id: UUID
    version: int = Field(description=VERSION_HELP)
    created_at: datetime
    updated_at: datetime


class Persona(JourneyTable, table=True):
    __tablename__ = "persona"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "key", name="uq_persona_key"),)
    id: UUID = sqlmodel.Field(default_factory=uuid7, primary_key=True)
    workspace_id: str = sqlmodel.Field(index=True)
    key: str
    name: str
    role: str | None = None
    background: str | None = None
    needs: list[str] = sqlmodel.Field(default_factory=list, sa_type=JSONB)
    goals: list[str] = sqlmodel.Field(default_factory=list, sa_type=JSONB)
    pains: list[str] = sqlmodel.Field(default_factory=list, sa_type=JSONB)
    priority: int = 100
    rules: list[dict[str, Any]] = sqlmodel.Field(default_factory=list, sa_type=JSONB)
    version: int = version_column()
    created_at: datetime = sqlmodel.Field(sa_column=now_column())
    updated_at: datetime = sqlmodel.Field(sa_column=now_column())


# Touchpoints ------------------------------------------------------------------------------------


class TouchpointFields(Shape):
    name: str = Field(min_length=1, max_length=200)
    channel: Channel
    department: str | None = Field(default=None, max_length=200, description="Owning department.")
    yearly_cost: Money | None = Field(default=None, description="Yearly cost or budget, in `currency`.")
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$", description="ISO 4217 code.")
    description: str | None = Field(default=None, max_length=5000)


class TouchpointCreate(TouchpointFields):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "key": "hotline",
                    "name": "Customer hotline",
                    "channel": "phone",
                    "department": "Customer Service",
                    "yearly_cost": "520000.00",
                    "currency": "EUR",
                    "description": "Inbound calls, 8-20h",
                }
            ]
        }
    )

    key: str = Field(pattern=KEY_PATTERN, description=KEY_HELP)


class TouchpointUpdate(Patch):
    key: Annotated[str | None, NotNull] = Field(default=None, pattern=KEY_PATTERN)
    name: Annotated[str | None, NotNull] = Field(default=None, min_length=1, max_length=200)
    channel: Annotated[Channel | None, NotNull] = Field(default=None)
    department: str | None = Field(default=None, max_length=200)
    yearly_cost: Money | None = Field(default=None, description="Yearly cost or budget; null clears it.")
    currency: Annotated[str | None, NotNull] = Field(default=None, pattern=r"^[A-Z]{3}$")
    description: str | None = Field(default=None, max_length=5000)


class TouchpointPublic(TouchpointCreate):
    model_config = ConfigDict(extra="ignore", from_attributes=True, json_schema_extra=None)
    id: UUID
    version: int = Field(description=VERSION_HELP)
    created_at: datetime
    updated_at: datetime


class Touchpoint(JourneyTable, table=True):
    __tablename__ = "touchpoint"
    __table_args__ = (
        sa.UniqueConstraint("workspace_id", "key", name="uq_touchpoint_key"),
        # Target of the steps' (touchpoint_id, workspace_id) key: a step cannot use another
        # workspace's touchpoint even if a bug let one through.
        sa.UniqueConstraint("id", "workspace_id", name="uq_touchpoint_id_workspace"),
    )
    id: UUID = sqlmodel.Field(default_factory=uuid7, primary_key=True)
    workspace_id: str = sqlmodel.Field(index=True)
    key: str
    name: str
    channel: Channel = sqlmodel.Field(sa_type=sa.Enum(Channel, name="channel", native_enum=False, length=20))
    department: str | None = None
    yearly_cost: Decimal | None = sqlmodel.Field(default=None, sa_type=sa.Numeric(14, 2))
    currency: str = sqlmodel.Field(default="EUR", max_length=3)
    description: str | None = None
    version: int = version_column()
    created_at: datetime = sqlmodel.Field(sa_column=now_column())
    updated_at: datetime = sqlmodel.Field(sa_column=now_column())


# Journeys and stages ----------------------------------------------------------------------------


class StageCreate(Shape):
    key: str = Field(pattern=KEY_PATTERN, description=KEY_HELP)
    name: str = Field(min_length=1, max_length=200)
    position: StrictInt | None = Field(default=None, ge=0, description="0-based; omitted: appended at the end.")


class StageUpdate(Patch):
    key: Annotated[str | None, NotNull] = Field(default=None, pattern=KEY_PATTERN)
    name: Annotated[str | None, NotNull] = Field(default=None, min_length=1, max_length=200)
    position: Annotated[StrictInt | None, NotNull] = Field(
        default=None, ge=0, description="Move the stage here (0-based)."
    )


class StagePublic(Shape):
    model_config = ConfigDict(extra="ignore", from_attributes=True, json_schema_extra=None)
    id: UUID
    journey_id: UUID
    key: str
    name: str
    position: int


DEFAULT_STAGES = [("need", "Need"), ("buy", "Buy"), ("use", "Use")]


class JourneyFields(Shape):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    persona_id: UUID | None = None
    owner: str | None = Field(default=None, max_length=200)
    team: str | None = Field(default=None, max_length=200)
    status: JourneyStatus = JourneyStatus.draft
    state: JourneyState = JourneyState.current
    improves_journey_id: UUID | None = Field(
        default=None, description="For a target journey: the current journey it improves."
    )


class JourneyCreate(JourneyFields):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "key": "switch-supplier",
                    "name": "Switch energy supplier",
                    "status": "active",
                    "owner": "Lena Vogel",
                    "team": "Journey team Switch",
                    "stages": [
                        {"key": "need", "name": "Need"},
                        {"key": "buy", "name": "Buy"},
                        {"key": "use", "name": "Use"},
                    ],
                }
            ]
        }
    )

    key: str = Field(pattern=KEY_PATTERN, description=KEY_HELP)
    stages: list[StageCreate] | None = Field(
        default=None, max_length=100, description="Omitted: the default Need → Buy → Use."
    )


class JourneyUpdate(Patch):
    key: Annotated[str | None, NotNull] = Field(default=None, pattern=KEY_PATTERN)
    name: Annotated[str | None, NotNull] = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    persona_id: UUID | None = None
    owner: str | None = Field(default=None, max_length=200)
    team: str | None = Field(default=None, max_length=200)
    status: Annotated[JourneyStatus | None, NotNull] = Field(default=None)
    state: Annotated[JourneyState | None, NotNull] = Field(default=None)
    improves_journey_id: UUID | None = None


class JourneyPublic(JourneyFields):
    model_config = ConfigDict(extra="ignore", from_attributes=True, json_schema_extra=None)
    id: UUID
    key: str
    version: int = Field(description=VERSION_HELP + " Its stages and steps belong to it: their changes bump it too.")
    created_at: datetime
    updated_at: datetime


class Journey(JourneyTable, table=True):
    __tablename__ = "journey"
    __table_args__ = (
        sa.UniqueConstraint("workspace_id", "key", name="uq_journey_key"),
        sa.CheckConstraint("improves_journey_id IS NULL OR state = 'target'", name="ck_journey_improves_only_target"),
    )
    id: UUID = sqlmodel.Field(default_factory=uuid7, primary_key=True)
    workspace_id: str = sqlmodel.Field(index=True)
    key: str
    name: str
    description: str | None = None
    persona_id: UUID | None = sqlmodel.Field(default=None, foreign_key="persona.id", ondelete="RESTRICT", index=True)
    owner: str | None = None
    team: str | None = None
    status: JourneyStatus = sqlmodel.Field(
        default=JourneyStatus.draft, sa_type=sa.Enum(JourneyStatus, name="journey_status", native_enum=False, length=20)
    )
    state: JourneyState = sqlmodel.Field(
        default=JourneyState.current, sa_type=sa.Enum(JourneyState, name="journey_state", native_enum=False, length=20)
    )
    improves_journey_id: UUID | None = sqlmodel.Field(default=None, foreign_key="journey.id", ondelete="SET NULL")
    version: int = version_column()
    created_at: datetime = sqlmodel.Field(sa_column=now_column())
    updated_at: datetime = sqlmodel.Field(sa_column=now_column())


class Stage(JourneyTable, table=True):
    __tablename__ = "stage"
    __table_args__ = (
        sa.UniqueConstraint("journey_id", "key", name="uq_stage_key"),
        sa.UniqueConstraint("journey_id", "position", name="uq_stage_position", deferrable=True, initially="DEFERRED"),
        sa.UniqueConstraint("id", "journey_id", name="uq_stage_id_journey"),
    )
    id: UUID = sqlmodel.Field(default_factory=uuid7, primary_key=True)
    workspace_id: str = sqlmodel.Field(index=True)
    journey_id: UUID = sqlmodel.Field(foreign_key="journey.id", ondelete="CASCADE")
    key: str
    name: str
    position: int


# Steps ------------------------------------------------------------------------------------------


class StepCreate(Shape):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "stage_id": "01a209a0-8e25-74db-89be-a7f25bb57cde",
                    "touchpoint_id": "01a209a0-8d3e-7103-b3b3-0a2bcb495eda",
                    "moment_of_truth": True,
                    "expected_emotion": 1,
                }
            ]
        }
    )

    stage_id: UUID
    touchpoint_id: UUID
    position: StrictInt | None = Field(default=None, ge=0, description="0-based within the stage; omitted: appended.")
    moment_of_truth: StrictBool = Field(default=False, description="Designed moment of truth.")
    expected_emotion: StrictInt = Field(default=0, ge=-2, le=2, description="−2 (very negative) … +2 (very positive).")


class StepUpdate(Patch):
    stage_id: Annotated[UUID | None, NotNull] = Field(
        default=None, description="Move the step to another stage of this journey."
    )
    position: Annotated[StrictInt | None, NotNull] = Field(default=None, ge=0)
    moment_of_truth: Annotated[StrictBool | None, NotNull] = Field(default=None)
    expected_emotion: Annotated[StrictInt | None, NotNull] = Field(default=None, ge=-2, le=2)


class StepPublic(Shape):
    model_config = ConfigDict(extra="ignore", from_attributes=True, json_schema_extra=None)
    id: UUID
    journey_id: UUID
    stage_id: UUID
    touchpoint_id: UUID
    position: int
    moment_of_truth: bool
    expected_emotion: int


class JourneyStep(JourneyTable, table=True):
    __tablename__ = "journey_step"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["stage_id", "journey_id"],
            ["stage.id", "stage.journey_id"],
            ondelete="CASCADE",
            name="fk_step_stage_in_journey",
        ),
        sa.ForeignKeyConstraint(
            ["touchpoint_id", "workspace_id"],
            ["touchpoint.id", "touchpoint.workspace_id"],
            ondelete="RESTRICT",
            name="fk_step_touchpoint_in_workspace",
        ),
        sa.UniqueConstraint("stage_id", "position", name="uq_step_position", deferrable=True, initially="DEFERRED"),
        sa.UniqueConstraint("stage_id", "touchpoint_id", name="uq_step_touchpoint_in_stage"),
        sa.CheckConstraint("expected_emotion BETWEEN -2 AND 2", name="ck_step_emotion"),
        sa.Index("ix_journey_step_journey", "journey_id", "stage_id", "position"),
        sa.Index("ix_journey_step_touchpoint", "touchpoint_id"),
    )
    id: UUID = sqlmodel.Field(default_factory=uuid7, primary_key=True)
    workspace_id: str
    journey_id: UUID
    stage_id: UUID
    touchpoint_id: UUID
    position: int
    moment_of_truth: bool = False
    expected_emotion: int = sqlmodel.Field(default=0, sa_type=sa.SmallInteger)
    created_at: datetime = sqlmodel.Field(sa_column=now_column())
    updated_at: datetime = sqlmodel.Field(sa_column=now_column())
