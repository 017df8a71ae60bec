"""A service's Alembic history walked one revision at a time on a real database: what each revision
ran, and which index builds on tables that already held data would have blocked their writes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine, make_url

from services.common.db import create_engine, ensure_database
from services.common.migrations import alembic_config

# CREATE [UNIQUE] INDEX without CONCURRENTLY takes a SHARE lock: the table's writes wait for the build.
_BLOCKING_INDEX = re.compile(
    r"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?!CONCURRENTLY\b)(?:IF\s+NOT\s+EXISTS\s+)?\S+\s+ON\s+(?:ONLY\s+)?\"?(\w+)",
    re.IGNORECASE,
)


@dataclass
class Walk:
    revisions: list[str] = field(default_factory=list)
    blocking_index_builds: list[str] = field(default_factory=list)  # "revision: statement"


def revisions(service_dir: Path, database_url: str) -> list[str]:
    """Base to head."""
    script = ScriptDirectory.from_config(alembic_config(service_dir, database_url))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


async def tables(database_url: str) -> set[str]:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
            return {r[0] for r in rows}
    finally:
        await engine.dispose()


def storing(statements: list[str], params: dict[str, Any]) -> Callable[[str], Awaitable[None]]:
    """A step of `walk_history`'s `after`: run these INSERTs, each with the params it names."""

    async def store(url: str) -> None:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.begin() as conn:
                for statement in statements:
                    names = set(re.findall(r"(?<!:):(\w+)", statement))
                    await conn.execute(sa.text(statement), {k: v for k, v in params.items() if k in names})
        finally:
            await engine.dispose()

    return store


async def walk_history(
    database_url: str,
    service_dir: Path,
    *,
    after: dict[str, Callable[[str], Awaitable[None]]],
    small_tables: frozenset[str] = frozenset(),
) -> Walk:
    """Upgrade from base to head one revision at a time; after revision r, run `after[r](url)` (to
    store rows the later revisions must carry along). Records every CREATE INDEX without
    CONCURRENTLY on a table that existed before its revision (`small_tables` excepted)."""
    await ensure_database(database_url)
    walk = Walk()
    database = make_url(database_url).database
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if conn.engine.url.database == database:
            statements.append(statement)

    sa.event.listen(Engine, "before_cursor_execute", record)
    try:
        for revision in revisions(service_dir, database_url):
            existing = await tables(database_url) - small_tables
            statements.clear()
            await asyncio.to_thread(command.upgrade, alembic_config(service_dir, database_url), revision)
            walk.revisions.append(revision)
            for statement in statements:
                found = _BLOCKING_INDEX.match(statement)
                if found and found.group(1) in existing:
                    walk.blocking_index_builds.append(f"{revision}: {' '.join(statement.split())}")
            if revision in after:
                await after[revision](database_url)
    finally:
        sa.event.remove(Engine, "before_cursor_execute", record)
    return walk
