"""Idempotency keys are purged once older than their time to live; the feedback import's key covers
its query string (the survey of CSV rows)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.idempotency import purge_idempotency_keys
from tests.conftest import Keys, unique_name
from tests.feedback.conftest import feedback_app, feedback_http, feedback_settings  # noqa: F401
from tests.feedback.factories import FeedbackApi

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


class TestFeedbackImport:
    async def test_same_key_and_csv_for_another_survey_is_a_conflict_not_a_replay(
        self,
        feedback_http: httpx.AsyncClient,  # noqa: F811
        keys: Keys,
        workspace: str,
    ) -> None:
        api = FeedbackApi(feedback_http, keys, workspace)
        first, second = await api.survey("first", status="closed"), await api.survey("second", status="closed")
        csv_body = "response_id,answers.recommend\nr1,9\n"
        headers = {"Content-Type": "text/csv", "Idempotency-Key": "history"}
        imported = await api.post(
            "/v1/responses/import", params={"survey_id": first["id"]}, content=csv_body, headers=headers
        )
        assert imported.status_code == 200, imported.text
        replay = await api.post(
            "/v1/responses/import", params={"survey_id": first["id"]}, content=csv_body, headers=headers
        )
        assert replay.headers["idempotent-replayed"] == "true"
        other = await api.post(
            "/v1/responses/import", params={"survey_id": second["id"]}, content=csv_body, headers=headers
        )
        assert other.status_code == 409, other.text
        assert "different request" in other.json()["detail"]

    async def test_an_empty_import_is_a_422_and_415_is_documented(
        self,
        feedback_app: FastAPI,  # noqa: F811
        feedback_http: httpx.AsyncClient,  # noqa: F811
        keys: Keys,
        workspace: str,
    ) -> None:
        api = FeedbackApi(feedback_http, keys, workspace)
        empty = await api.post("/v1/responses/import", content=b"", headers={"Content-Type": "application/x-ndjson"})
        assert empty.status_code == 422, empty.text
        assert empty.json()["type"] == "https://journeygraph.dev/problems/validation-error"
        unsupported = await api.post("/v1/responses/import", content=b"x", headers={"Content-Type": "text/plain"})
        assert unsupported.status_code == 415
        documented = feedback_app.openapi()["paths"]["/v1/responses/import"]["post"]["responses"]
        assert "application/problem+json" in documented["415"]["content"]
