"""Tables of the kit that live in every service's own database.

`define_kit_tables` adds them to a service's MetaData, so each service's Alembic history creates
and evolves them like its own tables.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID


def define_kit_tables(metadata: sa.MetaData) -> None:
    sa.Table(
        "outbox_event",
        metadata,
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("workspace_id", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("headers", JSONB, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        # Failed publishes of this row while others went out; at the relay's limit it is parked.
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Index(
            "ix_outbox_event_pending",
            "created_at",
            postgresql_where=sa.text("published_at IS NULL"),
        ),
    )
    sa.Table(
        "inbox_event",
        metadata,
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Index("ix_inbox_event_processed_at", "processed_at"),
    )
    sa.Table(
        "dead_letter",
        metadata,
        sa.Column("id", UUID(as_uuid=True), primary_key=True),  # UUIDv7: listed in parking order
        sa.Column("consumer", sa.Text, nullable=False),  # a consumer's name, or the outbox relay's
        sa.Column("workspace_id", sa.Text),  # null: the payload could not be read
        sa.Column("event_id", UUID(as_uuid=True)),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    sa.Table(
        "projection_state",
        metadata,
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("workspace_id", sa.Text, primary_key=True),
        # The occurred_at of the last event the consumer applied for the workspace: what it built is
        # complete up to this time (`as_of` in answers).
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    sa.Table(
        "idempotency_key",
        metadata,
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("method", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("request_hash", sa.Text, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("response_body", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Index("ix_idempotency_key_created_at", "created_at"),
    )
