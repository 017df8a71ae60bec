"""Reading the feedback service's database in tests: rows, a workspace's fingerprint, lock waits,
and what a consumer has applied."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI


async def rows(app: FastAPI, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    async with app.state.engine.connect() as conn:
        return [tuple(r) for r in await conn.execute(sa.text(sql), params)]


async def execute(app: FastAPI, sql: str, **params: Any) -> None:
    async with app.state.engine.begin() as conn:
        await conn.execute(sa.text(sql), params)


async def scalar(app: FastAPI, sql: str, **params: Any) -> Any:
    async with app.state.engine.connect() as conn:
        return (await conn.execute(sa.text(sql), params)).scalar()


async def event_ids(app: FastAPI, workspace: str, subject: str) -> list[str]:
    """The ids of the workspace's events of this subject, in the order they were written (from the outbox)."""
    found = await rows(
        app,
        "SELECT id::text FROM outbox_event WHERE workspace_id = :w AND subject = :s ORDER BY created_at, id",
        w=workspace,
        s=subject,
    )
    return [i for (i,) in found]


async def applied(app: FastAPI, consumer: str, event_id: str) -> bool:
    """Whether the consumer has applied (or skipped as not its type) this event: its inbox holds it."""
    found = await scalar(
        app,
        "SELECT count(*) FROM inbox_event WHERE consumer = :c AND event_id = CAST(:e AS uuid)",
        c=consumer,
        e=event_id,
    )
    return bool(found)


async def waiting_on_lock(app: FastAPI, statement_like: str) -> bool:
    """Whether a backend of the service's database waits for a lock while running a statement like this."""
    found = await scalar(
        app,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
        "AND query LIKE :q",
        q=statement_like,
    )
    return bool(found)


async def fingerprint(app: FastAPI, workspace: str) -> dict[str, tuple[int, str]]:
    """Every table with a workspace_id: (rows of the workspace, md5 of their text)."""
    tables = [
        t
        for (t,) in await rows(
            app,
            "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND column_name = 'workspace_id' ORDER BY table_name",
        )
    ]
    out: dict[str, tuple[int, str]] = {}
    for table in tables:
        ((n, digest),) = await rows(
            app,
            f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t "
            "WHERE workspace_id = :w",
            w=workspace,
        )
        out[table] = (n, digest)
    return out
