"""Alembic helpers: every service keeps its own history and applies it on start."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
        # A session lock (held until the connection closes): a revision with an autocommit block
        # (CREATE INDEX CONCURRENTLY) commits in between, which would end a transaction's lock.
        # Taken by polling: a replica blocked in pg_advisory_lock would hold a snapshot that the
        # concurrent index build waits for while the replica waits for the lock (a deadlock).
        while not connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _MIGRATION_LOCK}).scalar():
            connection.commit()
            time.sleep(0.5)
        connection.commit()
        context.configure(
            connection=connection, target_metadata=target_metadata, compare_type=True, transaction_per_migration=True
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as conn:
            await conn.run_sync(do_run)
        await engine.dispose()

    asyncio.run(run())


def create_index_concurrently(name: str, table: str, columns: Sequence[str], **kw: Any) -> None:
    """An index on a table that holds data, built without blocking its writes (CONCURRENTLY, outside
    a transaction). Call it first in a revision, before anything transactional: the autocommit block
    commits what ran before it. A build interrupted before leaves an invalid index of the same name,
    which is dropped first."""
    from alembic import op

    with op.get_context().autocommit_block():
        op.drop_index(name, table_name=table, if_exists=True, postgresql_concurrently=True)
        op.create_index(name, table, list(columns), postgresql_concurrently=True, **kw)


def replace_index_concurrently(name: str, table: str, columns: Sequence[str], **kw: Any) -> None:
    """Change an index's definition without blocking writes and without a moment with no index: the
    new one is built beside the old, the old one dropped, the new one renamed (all without an
    exclusive lock). Call it first in a revision, like create_index_concurrently."""
    from alembic import op

    create_index_concurrently(f"{name}_next", table, columns, **kw)
    with op.get_context().autocommit_block():
        op.drop_index(name, table_name=table, if_exists=True, postgresql_concurrently=True)
        op.execute(f"ALTER INDEX {name}_next RENAME TO {name}")


def upgrade_events_contract() -> None:
    """The kit tables' change of the events-contract revision (journey 0010, feedback 0004): relay
    attempts, dead letters by workspace, consumers' `as_of`, inbox purge. Frozen: a later change
    of the kit tables gets a function of its own."""
    import sqlalchemy as sa
    from alembic import op

    create_index_concurrently("ix_inbox_event_processed_at", "inbox_event", ["processed_at"])  # one row per event
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
