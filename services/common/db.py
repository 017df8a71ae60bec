"""Async SQLAlchemy on asyncpg: one engine per process, one transaction per request."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import TextClause
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def create_engine(database_url: str, *, pool_size: int = 20, pool_timeout: float = 10.0) -> AsyncEngine:
    return create_async_engine(
        database_url,
        # A fixed pool: overflow connections are closed on return, so under load every request past
        # the pool's size would pay for a new PostgreSQL backend (docs/engineering-notes.md). A
        # request that gets no connection within pool_timeout is a 503 (errors.py).
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=pool_timeout,
        # asyncpg caches prepared statements per connection; keep SQLAlchemy's cache large too.
        query_cache_size=1200,
    )


class RawStatement:
    """A `text()` statement compiled once to asyncpg's `$n` form and run on the driver connection.

    For the few hot paths only: SQLAlchemy's execute costs a few times the CPU of asyncpg's own per
    statement (docs/engineering-notes.md). The SQL stays one `text()`, shared with the SQLAlchemy paths.
    """

    def __init__(self, statement: TextClause) -> None:
        compiled = statement.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
        self.sql = compiled.string
        self.names = tuple(compiled.positiontup or ())

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[name] for name in self.names]

    async def fetch(self, conn: asyncpg.Connection, params: Mapping[str, Any]) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await conn.fetch(self.sql, *self.args(params))
        return rows

    async def fetchrow(self, conn: asyncpg.Connection, params: Mapping[str, Any]) -> asyncpg.Record | None:
        return await conn.fetchrow(self.sql, *self.args(params))


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The session's asyncpg connection, inside the session's transaction.

    SQLAlchemy's asyncpg adapter sends BEGIN lazily, with its first statement: a statement run on
    the driver connection before that would run in autocommit, outside the request's transaction.
    One round trip starts it when nothing has yet."""
    connection = await session.connection()
    conn: asyncpg.Connection = (await connection.get_raw_connection()).driver_connection
    if not conn.is_in_transaction():
        await connection.exec_driver_sql("SELECT 1")
    return conn


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session, session.begin():
        # begin() commits when the handler returns and rolls back when it raises. With
        # scope="function" this exit runs before the response is sent, so a failed commit
        # becomes an error response instead of a 200 for data that was never stored.
        yield session


SessionDep = Annotated[AsyncSession, Depends(_request_session, scope="function")]


def asyncpg_dsn(database_url: str) -> str:
    """The plain libpq-style DSN asyncpg wants for a SQLAlchemy URL."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def ensure_database(database_url: str) -> None:
    """Create the URL's database if it does not exist (embedded mode, tests, first start)."""
    url = make_url(database_url)
    name = url.database
    admin = asyncpg_dsn(url.set(database="postgres").render_as_string(hide_password=False))
    conn = await asyncpg.connect(admin)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # another replica was first
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
