"""Customers, interactions and outcomes: what real customers do at the touchpoints.

Tables here are large (interactions: millions of rows), so they are plain columns with the indexes
the derived views need; request shapes validate hard enough that no input reaches PostgreSQL in a
form it rejects (NUL characters, naive or out-of-range timestamps).
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

import sqlalchemy as sa
import sqlmodel
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool
from sqlalchemy.dialects.postgresql import JSONB
from uuid_utils.compat import uuid7

from services.common.timestamps import BOUNDS_HELP, Timestamp
from services.common.validation import FREEFORM_MAX_BYTES, check_freeform_size
from services.common.vocabulary import Channel
from services.journey.models._base import (
    KEY_PATTERN,
    VERSION_HELP,
    Amount,
    JourneyTable,
    Shape,
    now_column,
    version_column,
)

EXTERNAL_ID_PATTERN = r"^[^\x00-\x1f\x7f]{1,200}$"


def _no_nul(value: Any, path: str = "") -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"NUL characters are not allowed{' in ' + path if path else ''}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"text must be valid Unicode{' in ' + path if path else ''}") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _no_nul(k, path)
            _no_nul(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _no_nul(v, f"{path}[{i}]")
    elif isinstance(value, int) and not -(2**63) <= value < 2**64:
        # orjson (rows and events) encodes 64-bit integers only; a larger one failed the request
        raise ValueError(f"integers must fit in 64 bits{' in ' + path if path else ''}")


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    _no_nul(value)
    return value


# Free-form JSON travels in events: bounded, so any one item fits an event (validation.py).
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_object), AfterValidator(check_freeform_size)]
FREEFORM_HELP = f"Free-form JSON object of at most {FREEFORM_MAX_BYTES // 1024} KiB (as compact JSON)."
ExternalId = Annotated[str, Field(pattern=EXTERNAL_ID_PATTERN, description="The CRM's id of the customer.")]
EventId = Annotated[
    str, Field(pattern=EXTERNAL_ID_PATTERN, description="Your unique id of this event: the dedupe key of replays.")
]
Key = Annotated[str, Field(pattern=KEY_PATTERN)]


class IngestShape(BaseModel):
    """Base of the high-volume ingest shapes (10,000 items per call).

    Not `Shape`: its validator on every field costs a Python call per field per item. Here the
    text fields are refused NUL by their patterns, pydantic-core refuses unpaired surrogates in
    `str` fields, and the free-form JSON (`properties`) is checked by `JsonObject`.
    """

    model_config = ConfigDict(extra="forbid")


class VisitorType(enum.StrEnum):
    first_time = "first_time_visitor"
    returning = "returning_visitor"
    existing = "existing_customer"


# Customers --------------------------------------------------------------------------------------


class Consent(Shape):
    purpose: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,79}$", examples=["marketing"])
    channel: Channel | None = Field(default=None, description="Omitted: the consent holds for every channel.")
    granted: StrictBool
    at: Timestamp | None = Field(default=None, description=f"When given or withdrawn; omitted: now. {BOUNDS_HELP}.")


class CustomerUpsert(Shape):
    profile: JsonObject = Field(
        default_factory=dict, description="Explicit criteria; persona rules read these. " + FREEFORM_HELP
    )
    consents: list[Consent] = Field(default_factory=list, max_length=100)
    channel_preferences: list[Channel] = Field(default_factory=list, max_length=11, description="Preferred first.")
    existing_customer: StrictBool = Field(default=False, description="The CRM knows this person as a customer.")


class CustomerBulkItem(CustomerUpsert):
    external_id: ExternalId


class CustomerBulk(IngestShape):
    items: list[Any] = Field(
        min_length=1, max_length=10_000, description="Each a CustomerBulkItem; an invalid item fails alone."
    )


class CustomerPublic(Shape):
    model_config = ConfigDict(extra="ignore", from_attributes=True)
    id: UUID
    external_id: str
    profile: dict[str, Any]
    consents: list[Consent]
    channel_preferences: list[Channel]
    existing_customer: bool
    persona_id: UUID | None
    persona_key: str | None = None
    persona_rule: str | None = Field(default=None, description="Name of the persona rule that matched.")
    version: int = Field(description=VERSION_HELP)
    created_at: datetime
    updated_at: datetime


class Customer(JourneyTable, table=True):
    __tablename__ = "customer"
    __table_args__ = (
        sa.UniqueConstraint("workspace_id", "external_id", name="uq_customer_external_id"),
        sa.Index("ix_customer_persona", "persona_id"),  # not workspace-first: see migration 0009
    )
    id: UUID = sqlmodel.Field(default_factory=uuid7, primary_key=True)
    workspace_id: str
    external_id: str
    profile: dict[str, Any] = sqlmodel.Field(default_factory=dict, sa_type=JSONB)
    consents: list[dict[str, Any]] = sqlmodel.Field(default_factory=list, sa_type=JSONB)
    channel_preferences: list[str] = sqlmodel.Field(default_factory=list, sa_type=JSONB)
    existing_customer: bool = False
    # SET NULL: deleting a persona must not fail on its customers; re-evaluation reassigns them.
    persona_id: UUID | None = sqlmodel.Field(default=None, foreign_key="persona.id", ondelete="SET NULL")
    persona_rule: str | None = None
    version: int = version_column()
    created_at: datetime = sqlmodel.Field(sa_column=now_column())
    updated_at: datetime = sqlmodel.Field(sa_column=now_column())


# Interactions and outcomes ---------------------------------------------------------------------


class EventFields(IngestShape):
    event_id: EventId
    customer: ExternalId = Field(description="external_id of the customer; an unknown customer is created.")
    occurred_at: Timestamp = Field(
        description=f"With a zone offset; at most a few minutes in the future; {BOUNDS_HELP}."
    )
    journey: Key | None = Field(default=None, description="Key of the journey this event belongs to, if known.")
    properties: JsonObject = Field(default_factory=dict, description=FREEFORM_HELP)


class InteractionIn(EventFields):
    touchpoint: Key = Field(description="Key of the touchpoint met.")
    channel: Channel | None = Field(default=None, description="Omitted: the touchpoint's channel.")


class OutcomeIn(EventFields):
    name: Key = Field(description="purchase, conversion, churn or a name of your own.", examples=["purchase"])
    value: Amount | None = Field(default=None, description="Its value in `currency` (negative: a refund).")
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    touchpoint: Key | None = Field(default=None, description="Key of the touchpoint where it happened, if any.")


class EventBulk(IngestShape):
    items: list[Any] = Field(
        min_length=1, max_length=10_000, description="Each an InteractionIn / OutcomeIn; an invalid item fails alone."
    )


class InteractionPublic(Shape):
    id: UUID
    event_id: str
    customer: str
    customer_id: UUID
    touchpoint: str
    touchpoint_id: UUID
    channel: Channel
    occurred_at: datetime
    journey: str | None
    journey_id: UUID | None
    properties: dict[str, Any]


class OutcomePublic(Shape):
    id: UUID
    event_id: str
    customer: str
    customer_id: UUID
    name: str
    value: Decimal | None
    currency: str | None
    touchpoint: str | None
    touchpoint_id: UUID | None
    occurred_at: datetime
    journey: str | None
    journey_id: UUID | None
    properties: dict[str, Any]


class Interaction(JourneyTable, table=True):
    __tablename__ = "interaction"
    __table_args__ = (
        sa.UniqueConstraint("workspace_id", "event_id", name="uq_interaction_event_id"),
        sa.Index("ix_interaction_customer_time", "workspace_id", "customer_id", "occurred_at"),
        # Funnels, paths and reach read a journey's touchpoints: with journey_id (the tag filter) and
        # channel included they run from the index alone (index-only scan; the heap fetches were
        # half of a funnel's time over 1M interactions).
        sa.Index(
            "ix_interaction_touchpoint_time",
            "workspace_id",
            "touchpoint_id",
            "occurred_at",
            "customer_id",
            postgresql_include=["journey_id", "channel"],
        ),
    )
    id: UUID = sqlmodel.Field(primary_key=True)
    workspace_id: str
    event_id: str
    # No foreign keys on this table: their per-row triggers cost a third of the bulk insert. The ingest
    # resolves customer and touchpoint in the same transaction, holding its touchpoints FOR KEY SHARE
    # (once per touchpoint, not per row), and a touchpoint with interactions cannot be deleted; history
    # outlives a journey removed from the model (a dangling journey_id just no longer matches any journey).
    customer_id: UUID
    touchpoint_id: UUID
    channel: Channel = sqlmodel.Field(sa_type=sa.Enum(Channel, name="channel", native_enum=False, length=20))
    occurred_at: datetime = sqlmodel.Field(sa_type=sa.DateTime(timezone=True))
    journey_id: UUID | None = None
    properties: dict[str, Any] | None = sqlmodel.Field(default=None, sa_type=JSONB)
    recorded_at: datetime = sqlmodel.Field(sa_column=now_column())


class Outcome(JourneyTable, table=True):
    __tablename__ = "outcome"
    __table_args__ = (
        sa.UniqueConstraint("workspace_id", "event_id", name="uq_outcome_event_id"),
        sa.Index("ix_outcome_customer_time", "workspace_id", "customer_id", "occurred_at"),
        sa.Index("ix_outcome_name_time", "workspace_id", "name", "occurred_at"),
        sa.Index("ix_outcome_touchpoint", "workspace_id", "touchpoint_id"),  # is a touchpoint in use?
    )
    id: UUID = sqlmodel.Field(primary_key=True)
    workspace_id: str
    event_id: str
    customer_id: UUID = sqlmodel.Field(foreign_key="customer.id", ondelete="CASCADE")
    name: str
    value: Decimal | None = sqlmodel.Field(default=None, sa_type=sa.Numeric(18, 4))
    currency: str | None = sqlmodel.Field(default=None, max_length=3)
    touchpoint_id: UUID | None = None
    occurred_at: datetime = sqlmodel.Field(sa_type=sa.DateTime(timezone=True))
    journey_id: UUID | None = sqlmodel.Field(default=None, foreign_key="journey.id", ondelete="SET NULL")
    properties: dict[str, Any] | None = sqlmodel.Field(default=None, sa_type=JSONB)
    recorded_at: datetime = sqlmodel.Field(sa_column=now_column())


# Event payloads: batch events, split by size; every stored item is in exactly one -------------


class CustomersUpserted(Shape):
    items: list[CustomerPublic]


class CustomersReassigned(Shape):
    """Customers whose persona changed when the personas' rules did (re-evaluated in the background)."""

    items: list[CustomerPublic]


class InteractionsRecorded(Shape):
    items: list[InteractionPublic]


class OutcomesRecorded(Shape):
    items: list[OutcomePublic]
