"""References for the feedback ingest bench: a minimal endpoint that validates the same body and does
one raw asyncpg INSERT — no idempotency, validation against a survey, rollup, rules or outbox — twice:

- `create_app`: bare FastAPI on uvicorn, nothing else;
- `create_stack_app`: the same endpoint inside the service stack every journeygraph service is built
  from (`create_service_app`: bearer-token auth and rate limit, problem+json, request ids, Prometheus
  metrics, OpenTelemetry server spans, the database pool, NATS), so its ratio measures what the
  response write path itself costs.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel
from pydantic_settings import SettingsConfigDict
from uuid_utils.compat import uuid7

from services.common.auth import Caller, caller_with
from services.common.db import asyncpg_dsn
from services.common.service import create_service_app
from services.common.settings import ServiceSettings

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
        return await _insert(request.app.state.pool, body)

    return app


_INSERT = (
    "INSERT INTO ref_response (id, workspace_id, survey_id, response_id, customer_external_id, touchpoint_key, "
    "channel, submitted_at, answers, comment, nps, created_at) "
    "VALUES ($1, 'bench', $2, $3, $4, $5, $6, $7, $8::text::jsonb, $9, $10, $7)"
)


async def _insert(conn: asyncpg.Pool | asyncpg.Connection, body: Body) -> Response:
    now = datetime.now(UTC)
    row_id = uuid7()
    await conn.execute(
        _INSERT,
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


class StackSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FBSTACK_", extra="ignore")
    service_name: str = "feedback-reference"
    migrate_on_start: bool = False  # the bench creates ref_response itself


def create_stack_app() -> FastAPI:
    router = APIRouter(prefix="/v1")

    @router.post("/insert", status_code=201)
    async def insert(
        caller: Annotated[Caller, caller_with("feedback:write")], request: Request, body: Body
    ) -> Response:
        async with request.app.state.engine.connect() as conn:
            return await _insert((await conn.get_raw_connection()).driver_connection, body)

    return create_service_app(
        title="feedback bench reference",
        description="One raw INSERT behind the service stack.",
        settings=StackSettings(),  # from the environment
        service_dir=Path(__file__).parent,
        routers=[router],
        published_events={},
    )
