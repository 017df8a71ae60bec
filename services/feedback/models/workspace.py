"""Per-workspace configuration of the feedback service, and customers' opt-outs."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
import sqlmodel
from pydantic import Field, StrictBool, StrictInt

from services.feedback.models._base import (
    VERSION_HELP,
    ExternalId,
    FeedbackTable,
    PublicShape,
    Shape,
    now_column,
    version_column,
)


class WorkspaceSettingsFields(Shape):
    allow_private_webhook_targets: StrictBool = Field(
        default=False, description="Allow webhooks to loopback/private addresses (development, tests)."
    )
    max_surveys_per_period: StrictInt = Field(
        default=3, ge=0, le=1000, description="Survey fatigue: at most N responses…"
    )
    period_days: StrictInt = Field(default=90, ge=1, le=3650, description="…per this many days.")
    quiet_days: StrictInt = Field(
        default=14, ge=0, le=3650, description="No survey within this many days of a response."
    )


class WorkspaceSettingsPublic(WorkspaceSettingsFields):
    model_config = {"extra": "ignore", "from_attributes": True}
    version: int = Field(description=VERSION_HELP + " 0: the defaults, never changed.")


class WorkspaceSetting(FeedbackTable, table=True):
    __tablename__ = "workspace_setting"
    workspace_id: str = sqlmodel.Field(primary_key=True)
    allow_private_webhook_targets: bool = False
    max_surveys_per_period: int = 3
    period_days: int = 90
    quiet_days: int = 14
    version: int = version_column()
    updated_at: datetime = sqlmodel.Field(sa_column=now_column())


class OptOutCreate(Shape):
    customer_external_id: ExternalId
    reason: str | None = Field(default=None, max_length=500)


class OptOutPublic(PublicShape):
    customer_external_id: str
    reason: str | None
    created_at: datetime = Field(description="When the customer opted out (again).")
    withdrawn_at: datetime | None = Field(description="When the opt-out was withdrawn; null while it holds.")
    version: int = Field(description=VERSION_HELP)


class OptOut(FeedbackTable, table=True):
    """A customer's opt-out. Withdrawing it keeps the row (a tombstone), so its version goes on
    increasing and a consumer can order an opt-out added again after a withdrawal."""

    __tablename__ = "opt_out"
    workspace_id: str = sqlmodel.Field(primary_key=True)
    customer_external_id: str = sqlmodel.Field(primary_key=True)
    reason: str | None = None
    created_at: datetime = sqlmodel.Field(sa_column=now_column())
    withdrawn_at: datetime | None = sqlmodel.Field(default=None, sa_type=sa.DateTime(timezone=True))
    version: int = version_column()


class Eligibility(Shape):
    eligible: bool
    reason: str
    customer_external_id: str
    responses_in_period: int
    last_response_at: datetime | None
    next_eligible_at: datetime | None = Field(description="When the customer may be surveyed again, if known.")
