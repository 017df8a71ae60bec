"""Webhook subscriptions and their delivery log."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import sqlalchemy as sa
import sqlmodel
from pydantic import AnyHttpUrl, Field, StrictBool
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from uuid_utils.compat import uuid7

from services.feedback.models._base import (
    VERSION_HELP,
    FeedbackTable,
    PublicShape,
    Shape,
    enum_type,
    now_column,
    version_column,
)

EVENT_TYPE_PATTERN = r"^(\*|feedback\.[a-z_]+\.[a-z_]+|feedback\.[a-z_]+\.\*)$"
ENABLED_HELP = (
    "Disabled: nothing is sent; events that occur meanwhile are not delivered, and deliveries already "
    "pending wait until it is enabled again."
)
# The pattern is in the schema; the store checks it, with a message that names the bad entries.
EventTypes = Annotated[
    list[str],
    Field(
        min_length=1,
        max_length=50,
        description="Subjects such as feedback.response.submitted, feedback.case.*, or * for all.",
        json_schema_extra={"items": {"type": "string", "pattern": EVENT_TYPE_PATTERN}},
    ),
]


class DeliveryStatus(enum.StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"  # gave up after the last attempt; can be redelivered by hand


class WebhookCreate(Shape):
    url: AnyHttpUrl = Field(description="HTTPS (or HTTP) endpoint; private and loopback targets need the setting.")
    event_types: EventTypes
    secret: str | None = Field(
        default=None,
        pattern=r"^whsec_[A-Za-z0-9+/=]{24,200}$",
        description="Standard Webhooks secret (whsec_ + base64); omitted: one is generated.",
    )
    description: str | None = Field(default=None, max_length=500)
    enabled: StrictBool = Field(default=True, description=ENABLED_HELP)

    model_config = {
        "json_schema_extra": {
            "examples": [{"url": "https://crm.example.com/hooks/journeygraph", "event_types": ["feedback.case.*"]}]
        }
    }


class WebhookUpdate(Shape):
    url: AnyHttpUrl | None = None
    event_types: EventTypes | None = None
    description: str | None = Field(default=None, max_length=500)
    enabled: StrictBool | None = Field(default=None, description=ENABLED_HELP)


class WebhookPublic(PublicShape):
    id: UUID
    url: str
    event_types: list[str]
    description: str | None
    enabled: bool
    version: int = Field(description=VERSION_HELP)
    created_at: datetime = Field(description="Events that occurred from then on are delivered.")
    updated_at: datetime


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="Shown once: verify signatures with it.")


class Attempt(PublicShape):
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float


class DeliveryPublic(PublicShape):
    id: UUID
    subscription_id: UUID
    event_id: UUID = Field(description="The event's id: also the `webhook-id` header of every attempt.")
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None = Field(
        description="When the next attempt is due (null: none is); while an attempt is under way, when it is "
        "tried again should that attempt's outcome be lost."
    )
    last_status_code: int | None
    last_error: str | None
    log: list[Attempt]
    created_at: datetime
    delivered_at: datetime | None


class WebhookSubscription(FeedbackTable, table=True):
    __tablename__ = "webhook_subscription"
    id: UUID = sqlmodel.Field(default_factory=uuid7, primary_key=True)
    workspace_id: str = sqlmodel.Field(index=True)
    url: str
    event_types: list[str] = sqlmodel.Field(sa_type=ARRAY(sa.Text))
    secret: str
    description: str | None = None
    enabled: bool = True
    version: int = version_column()
    created_at: datetime = sqlmodel.Field(sa_column=now_column())
    updated_at: datetime = sqlmodel.Field(sa_column=now_column())


class WebhookDelivery(FeedbackTable, table=True):
    __tablename__ = "webhook_delivery"
    __table_args__ = (
        sa.UniqueConstraint("subscription_id", "event_id", name="uq_delivery_event"),
        sa.Index("ix_delivery_due", "next_attempt_at", postgresql_where=sa.text("status = 'pending'")),
        sa.Index("ix_delivery_subscription", "subscription_id", "id"),
    )
    id: UUID = sqlmodel.Field(default_factory=uuid7, primary_key=True)
    workspace_id: str
    subscription_id: UUID = sqlmodel.Field(foreign_key="webhook_subscription.id", ondelete="CASCADE")
    event_id: UUID
    event_type: str
    payload: bytes = sqlmodel.Field(sa_type=sa.LargeBinary)
    status: DeliveryStatus = sqlmodel.Field(sa_type=enum_type(DeliveryStatus, "delivery_status"))
    attempts: int = 0
    next_attempt_at: datetime | None = sqlmodel.Field(default=None, sa_type=sa.DateTime(timezone=True))
    last_status_code: int | None = None
    last_error: str | None = None
    log: list[dict[str, Any]] = sqlmodel.Field(default_factory=list, sa_type=JSONB)
    created_at: datetime = sqlmodel.Field(sa_column=now_column())
    delivered_at: datetime | None = sqlmodel.Field(default=None, sa_type=sa.DateTime(timezone=True))
