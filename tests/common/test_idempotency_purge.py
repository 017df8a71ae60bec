"""Idempotency keys are purged once older than their time to live."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.idempotency import purge_idempotency_keys
from tests.conftest import unique_name

_INSERT = sa.text(
    "INSERT INTO idempotency_key (workspace_id, key, method, path, request_hash, status_code, response_body, "
    "created_at) VALUES (:w, :k, 'POST', '/v1/x', 'h', 201, '\\x7b7d', now() - make_interval(hours => :age))"
)


class TestPurge:
    async def test_keys_older_than_the_age_are_deleted_the_others_kept(self, journey_app: FastAPI) -> None:
        workspace = unique_name("ws")
        async with journey_app.state.engine.begin() as conn:
            for key, age in (("old", 30), ("older", 24 * 9), ("fresh", 1)):
                await conn.execute(_INSERT, {"w": workspace, "k": key, "age": age})
            purged = await purge_idempotency_keys(conn, timedelta(hours=24))
            left = (
                await conn.scalars(sa.text("SELECT key FROM idempotency_key WHERE workspace_id = :w"), {"w": workspace})
            ).all()
        assert purged >= 2
        assert left == ["fresh"]

    async def test_it_runs_in_a_session_too(self, journey_app: FastAPI) -> None:
        workspace = unique_name("ws")
        async with AsyncSession(journey_app.state.engine) as session, session.begin():
            await session.execute(_INSERT, {"w": workspace, "k": "old", "age": 100})
            assert await purge_idempotency_keys(session, timedelta(hours=48)) >= 1

    async def test_the_services_relay_purges_them_with_the_ttl(self, journey_app: FastAPI) -> None:
        workspace = unique_name("ws")
        async with journey_app.state.engine.begin() as conn:
            for key, age in (("expired", 49), ("kept", 47)):  # IDEMPOTENCY_TTL_HOURS: 48
                await conn.execute(_INSERT, {"w": workspace, "k": key, "age": age})
        await journey_app.state.relay._purge()  # what it runs hourly
        async with journey_app.state.engine.connect() as conn:
            left = await conn.scalars(
                sa.text("SELECT key FROM idempotency_key WHERE workspace_id = :w"), {"w": workspace}
            )
            assert left.all() == ["kept"]
