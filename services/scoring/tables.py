"""The scoring service's tables: a read model of the journey and feedback streams, and the scores.

Everything here is built from events (`readmodel.py`) and can be rebuilt by replaying the streams
from the start into an empty database. Written by set-based SQL, so plain SQLAlchemy Core tables.

- Structure (journey, stage, step, touchpoint, customer) keeps each aggregate's `version`: an event
  whose version is not above the stored one changes nothing, whatever order events arrive in. A
  deletion is a tombstone (`deleted` / `removed` with its version), so a late older event cannot
  bring the row back.
- Facts (interaction, outcome) never change: inserted once per id. Responses change once (their
  comment analysis): kept by version.
- Customers are numbered (`customer_ref.n`) the first time any event names them, so the recompute
  loads plain integers (a customer's external id joins interactions, outcomes and responses, which
  name customers by it). The number is a 64-bit hash of workspace and external id, not a sequence:
  a rebuilt database numbers every customer as the running one did, so it orders customers, and
  draws its bootstrap samples, the same way and reaches the same scores. A collision (about 1 in
  10^7 for a million customers) is refused by the unique index, loudly, never merged silently.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

from services.common.kit_tables import define_kit_tables

METADATA = sa.MetaData()
define_kit_tables(METADATA)


def _tz(name: str, **kw: object) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), **kw)  # type: ignore[arg-type]


journey = sa.Table(
    "journey",
    METADATA,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("workspace_id", sa.Text, nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("persona_id", UUID(as_uuid=True)),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_journey_workspace_key", "workspace_id", "key"),
)

stage = sa.Table(
    "stage",
    METADATA,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("workspace_id", sa.Text, nullable=False),
    sa.Column("journey_id", UUID(as_uuid=True), nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),  # the journey's version when last written
    sa.Column("removed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_stage_journey", "journey_id"),
)

step = sa.Table(
    "step",
    METADATA,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("workspace_id", sa.Text, nullable=False),
    sa.Column("journey_id", UUID(as_uuid=True), nullable=False),
    sa.Column("stage_id", UUID(as_uuid=True), nullable=False),
    sa.Column("touchpoint_id", UUID(as_uuid=True), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("moment_of_truth", sa.Boolean, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),  # the journey's version when last written
    sa.Column("removed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_step_journey", "journey_id"),
    sa.Index("ix_step_touchpoint", "workspace_id", "touchpoint_id"),
)

touchpoint = sa.Table(
    "touchpoint",
    METADATA,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("workspace_id", sa.Text, nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("yearly_cost", sa.Numeric(14, 2)),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_touchpoint_workspace_key", "workspace_id", "key"),
)

customer_ref = sa.Table(
    "customer_ref",
    METADATA,
    sa.Column("workspace_id", sa.Text, primary_key=True),
    sa.Column("external_id", sa.Text, primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False),
    # From the customer events (null until one arrives).
    sa.Column("persona_id", UUID(as_uuid=True)),
    sa.Column("version", sa.Integer, nullable=False, server_default="0"),
    sa.Index("uq_customer_ref_n", "workspace_id", "n", unique=True),
    sa.Index("ix_customer_ref_persona", "workspace_id", "persona_id"),
)

interaction = sa.Table(
    "interaction",
    METADATA,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("workspace_id", sa.Text, nullable=False),
    sa.Column("customer_n", sa.BigInteger, nullable=False),
    sa.Column("touchpoint_id", UUID(as_uuid=True), nullable=False),
    sa.Column("journey_id", UUID(as_uuid=True)),  # the tag, if any: untagged counts for every journey
    _tz("occurred_at", nullable=False),
    sa.Index("ix_interaction_touchpoint", "workspace_id", "touchpoint_id", "occurred_at"),
    sa.Index("ix_interaction_customer", "workspace_id", "customer_n"),  # the tallies' before and after
)

outcome = sa.Table(
    "outcome",
    METADATA,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("workspace_id", sa.Text, nullable=False),
    sa.Column("customer_n", sa.BigInteger, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("value", sa.Numeric(18, 4)),
    sa.Column("journey_id", UUID(as_uuid=True)),
    sa.Column("touchpoint_id", UUID(as_uuid=True)),
    _tz("occurred_at", nullable=False),
    sa.Index("ix_outcome_name", "workspace_id", "name", "occurred_at"),
    sa.Index("ix_outcome_customer", "workspace_id", "customer_n"),
)

response = sa.Table(
    "response",
    METADATA,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("workspace_id", sa.Text, nullable=False),
    sa.Column("customer_n", sa.BigInteger),  # anonymous responses: null
    sa.Column("journey_key", sa.Text),
    sa.Column("touchpoint_key", sa.Text),
    sa.Column("nps", sa.SmallInteger),
    sa.Column("csat", sa.SmallInteger),
    sa.Column("ces", sa.SmallInteger),
    _tz("submitted_at", nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Index("ix_response_journey", "workspace_id", "journey_key", "submitted_at"),
    sa.Index("ix_response_touchpoint", "workspace_id", "touchpoint_key", "submitted_at"),
    sa.Index("ix_response_customer", "workspace_id", "customer_n"),
)

# Per workspace: health weights, quadrant thresholds, what counts as a conversion (routes: /v1/settings).
score_settings = sa.Table(
    "score_settings",
    METADATA,
    sa.Column("workspace_id", sa.Text, primary_key=True),
    sa.Column("settings", JSONB, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    _tz("updated_at", nullable=False, server_default=sa.func.now()),
)

# What is scored for a journey: the whole history of every customer by default; a caller may add a
# scope (a persona, a time window), which is then kept up to date like the default one.
score_scope = sa.Table(
    "score_scope",
    METADATA,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("workspace_id", sa.Text, nullable=False),
    sa.Column("journey_id", UUID(as_uuid=True), nullable=False),
    sa.Column("persona_id", UUID(as_uuid=True)),
    _tz("since"),
    _tz("until"),
    _tz("created_at", nullable=False, server_default=sa.func.now()),
    sa.Index(
        "uq_score_scope",
        "workspace_id",
        "journey_id",
        sa.text("coalesce(persona_id, '00000000-0000-0000-0000-000000000000'::uuid)"),
        sa.text("coalesce(since, '-infinity'::timestamptz)"),
        sa.text("coalesce(until, 'infinity'::timestamptz)"),
        unique=True,
    ),
)

score_snapshot = sa.Table(
    "score_snapshot",
    METADATA,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),  # UUIDv7: in computing order
    sa.Column("workspace_id", sa.Text, nullable=False),
    sa.Column("journey_id", UUID(as_uuid=True), nullable=False),
    sa.Column("scope_id", UUID(as_uuid=True), nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),  # 1, 2, ... per scope: the event's version
    _tz("computed_at", nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),  # the snapshot's JSON (models.Scores), as served
    sa.Index("ix_score_snapshot_scope", "workspace_id", "journey_id", "scope_id", sa.text("id DESC")),
    sa.Index("uq_score_snapshot_version", "scope_id", "version", unique=True),
)

# Each touchpoint's latest relevance per journey (default scope), kept with every snapshot: the
# cross-journey priority of a touchpoint weighs them by each journey's customers or value.
touchpoint_relevance = sa.Table(
    "touchpoint_relevance",
    METADATA,
    sa.Column("workspace_id", sa.Text, primary_key=True),
    sa.Column("journey_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("touchpoint_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("snapshot_id", UUID(as_uuid=True), nullable=False),
    sa.Column("relevance", sa.Float),
    sa.Column("relevance_low", sa.Float),
    sa.Column("relevance_high", sa.Float),
    sa.Column("customers", sa.Integer, nullable=False),
    sa.Column("conversion_value", sa.Float, nullable=False),
    sa.Index("ix_touchpoint_relevance_touchpoint", "workspace_id", "touchpoint_id"),
)

# Each scope's counts (`tally.Tally` as one bigint[] over the journey's touchpoints, in map order),
# kept by the consumers: a batch of facts adds the difference it makes to its customers' counts.
# A structural change of the journey (its touchpoints, stages) drops the row; the recompute worker
# counts it again from the facts.
score_tally = sa.Table(
    "score_tally",
    METADATA,
    sa.Column("scope_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("workspace_id", sa.Text, nullable=False),
    sa.Column("journey_id", UUID(as_uuid=True), nullable=False),
    sa.Column("touchpoints", sa.ARRAY(UUID(as_uuid=True)), nullable=False),
    sa.Column("counts", sa.ARRAY(sa.BigInteger), nullable=False),
    _tz("updated_at", nullable=False, server_default=sa.func.now()),
    sa.Index("ix_score_tally_journey", "workspace_id", "journey_id"),
)

# Journeys whose inputs changed since their last scores, in two lanes: `due_at`, when the scores are
# refreshed from the tallies (the first change + the debounce), and `fit_due_at`, when the models are
# fitted again on every row (the first change + the refit delay). A steady stream of events cannot
# postpone either (a mark keeps the earlier time). A replica claiming a lane clears its due time
# and leases it (`lease`/`fit_lease` until `leased_until`/`fit_leased_until`); a change meanwhile
# makes it due again; a lease that ran out (its replica died) is claimed again. The lanes run side
# by side: a long fit does not hold the refreshes back.
dirty_journey = sa.Table(
    "dirty_journey",
    METADATA,
    sa.Column("workspace_id", sa.Text, primary_key=True),
    sa.Column("journey_id", UUID(as_uuid=True), primary_key=True),
    _tz("due_at"),
    _tz("leased_until"),
    sa.Column("lease", UUID(as_uuid=True)),  # the holder's token: only it may store or release
    _tz("fit_due_at"),
    _tz("fit_leased_until"),
    sa.Column("fit_lease", UUID(as_uuid=True)),
    sa.Index("ix_dirty_journey_due", "due_at"),
)
