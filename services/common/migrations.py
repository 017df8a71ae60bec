"""Alembic helpers: every service keeps its own history and applies it on start."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

# Replicas starting together must not run the same migration twice.
_MIGRATION_LOCK = 725_001


def alembic_config(service_dir: Path, database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(service_dir / "migrations"))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade_to_head(service_dir: Path, database_url: str) -> None:
    """Blocking: call from a thread (asyncio.to_thread) inside an event loop."""
    command.upgrade(alembic_config(service_dir, database_url), "head")


def run_env(target_metadata: MetaData) -> None:
    """Body of every service's migrations/env.py (online mode, asyncpg, advisory lock)."""
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is not set"

    def do_run(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            # Held until this transaction ends, whether it commits or fails.
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as conn:
            await conn.run_sync(do_run)
        await engine.dispose()

    asyncio.run(run())


def upgrade_events_contract() -> None:
    """The kit tables' change of the events-contract revision (journey 0010, feedback 0004): relay
    attempts, dead letters by workspace, consumers' `as_of`, inbox purge. Frozen: a later change
    of the kit tables gets a function of its own."""
    import sqlalchemy as sa
    from alembic import op

    op.add_column("outbox_event", sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
    op.add_column("outbox_event", sa.Column("last_error", sa.Text(), nullable=True))
    op.add_column("dead_letter", sa.Column("workspace_id", sa.Text(), nullable=True))
    # UUID keys like every other table (cursor pagination); rows parked before get random ones.
    op.drop_constraint("dead_letter_pkey", "dead_letter")
    op.drop_column("dead_letter", "id")
    op.add_column(
        "dead_letter", sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False)
    )
    op.alter_column("dead_letter", "id", server_default=None)
    op.create_primary_key("dead_letter_pkey", "dead_letter", ["id"])
    op.create_index("ix_inbox_event_processed_at", "inbox_event", ["processed_at"], unique=False)
    op.create_table(
        "projection_state",
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("workspace_id", sa.Text(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "workspace_id"),
    )


def downgrade_events_contract() -> None:
    import sqlalchemy as sa
    from alembic import op

    op.drop_table("projection_state")
    op.drop_index("ix_inbox_event_processed_at", table_name="inbox_event")
    op.drop_constraint("dead_letter_pkey", "dead_letter")
    op.drop_column("dead_letter", "id")
    op.add_column("dead_letter", sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False))
    op.create_primary_key("dead_letter_pkey", "dead_letter", ["id"])
    op.drop_column("dead_letter", "workspace_id")
    op.drop_column("outbox_event", "last_error")
    op.drop_column("outbox_event", "attempts")
