"""The reference for the feedback ingest bench: a minimal endpoint on the same stack (FastAPI, uvicorn,
asyncpg) that validates the same body and does one raw asyncpg INSERT — no auth, idempotency,
validation against a survey, rollup, rules or outbox."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel
from uuid_utils.compat import uuid7

from services.common.db import asyncpg_dsn

TABLE = """
CREATE TABLE IF NOT EXISTS ref_response (
  id uuid PRIMARY KEY, workspace_id text NOT NULL, survey_id uuid NOT NULL, response_id text,
  customer_external_id text, touchpoint_key text, channel text, submitted_at timestamptz NOT NULL,
  answers jsonb NOT NULL, comment text, nps smallint, created_at timestamptz NOT NULL
)
"""


class Body(BaseModel):
    survey_id: UUID
    response_id: str | None = None
    customer_external_id: str | None = None
    touchpoint_key: str | None = None
    channel: str | None = None
    answers: dict[str, Any]
    comment: str | None = None


def create_app() -> FastAPI:
    dsn = asyncpg_dsn(os.environ["FBREF_DATABASE_URL"])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(dsn, min_size=10, max_size=20)
        async with app.state.pool.acquire() as conn:
            await conn.execute(TABLE)
        yield
        await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/insert", status_code=201)
    async def insert(request: Request, body: Body) -> Response:
        now = datetime.now(UTC)
        row_id = uuid7()
        await request.app.state.pool.execute(
            "INSERT INTO ref_response (id, workspace_id, survey_id, response_id, customer_external_id, touchpoint_key, "
            "channel, submitted_at, answers, comment, nps, created_at) "
            "VALUES ($1, 'bench', $2, $3, $4, $5, $6, $7, $8, $9, $10, $7)",
            row_id,
            body.survey_id,
            body.response_id,
            body.customer_external_id,
            body.touchpoint_key,
            body.channel,
            now,
            orjson.dumps(body.answers).decode(),
            body.comment,
            body.answers.get("recommend"),
        )
        return Response(orjson.dumps({"id": row_id, **body.model_dump(mode="json")}), status_code=201)

    return app
