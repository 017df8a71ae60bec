"""create_service_app: the FastAPI app every service is built from.

Lifespan: migrate (Alembic, advisory-locked) → engine → broker (streams, consumers) → outbox relay
→ the service's own background workers; shutdown in reverse.
Nothing happens at import time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from pydantic import BaseModel
from sqlalchemy import text

from services.common import admin
from services.common.auth import AuthenticateFirst, TokenVerifier
from services.common.consumer import Consumer, create_broker, pull_loops
from services.common.db import create_engine, create_sessionmaker
from services.common.errors import install_problem_handlers
from services.common.events import MAX_EVENT_BYTES, Event
from services.common.idempotency import IdempotentReplay, replay_response
from services.common.migrations import upgrade_to_head
from services.common.outbox import WAKE_KEY, OutboxRelay, ensure_streams
from services.common.settings import ServiceSettings
from services.common.telemetry import configure_logging, configure_tracing, instrument, telemetry_config
from services.common.worker import Worker

# Builds the service's workers once the engine and sessionmaker exist (on app.state).
WorkerSetup = Callable[[FastAPI], Sequence[Worker]]

EVENTS_CONTRACT = f"""

**Events.** Every state change is published through a transactional outbox as an event on NATS
JetStream. The envelope: `id` (also the `Nats-Msg-Id` and, for webhooks, the `webhook-id`), `type`
(the subject), `workspace_id`, `occurred_at`, `aggregate_id` and `version` (the aggregate's version
after the change: it increases with every change, so drop an event whose version is not above the one
you hold), and `data`, the aggregate's full public state. A batch event carries several aggregates in
`data.items`, each with its own `id` (and `version` when it can change); its envelope's `aggregate_id`
and `version` are null. Delivery is **at least once** and may **reorder events across aggregates**:
dedupe on `id`, order by `version`. No event is larger than {MAX_EVENT_BYTES} bytes: batches are split
by size. The streams keep every event, so a read model can be rebuilt by replaying from the start."""


def create_service_app(
    *,
    title: str,
    description: str,
    settings: ServiceSettings,
    service_dir: Path,
    routers: Sequence[APIRouter],
    published_events: dict[str, type[BaseModel]],
    openapi_tags: list[dict[str, Any]] | None = None,
    consumers: Sequence[Consumer] = (),
    setup_workers: WorkerSetup | None = None,
) -> FastAPI:
    configure_logging(level=settings.log_level, json=settings.log_json)
    configure_tracing(settings.service_name, settings.otel_exporter_otlp_endpoint)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await asyncio.to_thread(upgrade_to_head, service_dir, settings.database_url)
        engine = create_engine(settings.database_url, pool_timeout=settings.database_pool_timeout_seconds)
        broker: NatsBroker = app.state.broker
        await broker.connect()
        await ensure_streams(broker.connection, max_age_days=settings.stream_max_age_days)
        relay = OutboxRelay(
            engine,
            broker.connection,
            service=settings.service_name,
            poll_seconds=settings.outbox_poll_seconds,
            max_attempts=settings.outbox_max_attempts,
        )
        sessionmaker = create_sessionmaker(engine)
        sessionmaker.kw["info"] = {WAKE_KEY: relay.wake}
        for loop in loops:
            loop.runner.bind(sessionmaker)
        await broker.start()
        relay.start()
        for loop in loops:
            loop.start(broker.connection)
        app.state.engine, app.state.sessionmaker, app.state.relay = engine, sessionmaker, relay
        workers = list(setup_workers(app)) if setup_workers is not None else []
        for worker in workers:
            worker.start()
        try:
            yield
        finally:
            for worker in reversed(workers):
                await worker.stop()
            for loop in loops:
                await loop.stop()
            await relay.stop()
            await broker.stop()
            await engine.dispose()

    app = FastAPIOffline(  # /docs and /redoc with their assets served by the app, not a CDN
        title=title,
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        openapi_tags=openapi_tags,
        responses={},
        telemetry=telemetry_config(),
    )
    app.state.settings = settings
    app.state.verifier = TokenVerifier(settings)
    app.state.broker = broker = create_broker(settings.nats_url)
    for subject, model in published_events.items():
        # Documentation only: events are sent by the outbox relay, not through these publishers.
        broker.publisher(subject, schema=Event[model], title=subject)  # type: ignore[valid-type]
    loops = pull_loops(
        consumers,
        max_attempts=settings.consumer_max_attempts,
        ack_wait_seconds=settings.consumer_ack_wait_seconds,
        batch_size=settings.consumer_batch_size,
    )
    app.state.runners = {loop.runner.name: loop.runner for loop in loops}
    asyncapi = AsyncAPI(broker, title=f"{title} events", version="0.1.0", description=description + EVENTS_CONTRACT)

    install_problem_handlers(app)

    async def on_replay(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, IdempotentReplay)
        return replay_response(exc)

    app.add_exception_handler(IdempotentReplay, on_replay)
    for router in (*routers, admin.router):
        app.include_router(router)

    @app.get("/healthz", tags=["operations"], include_in_schema=False)
    async def check_alive() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], include_in_schema=False)
    async def check_ready(request: Request) -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            async with request.app.state.engine.connect() as conn:
                await asyncio.wait_for(conn.execute(text("SELECT 1")), timeout=2)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {exc.__class__.__name__}"
        connected = request.app.state.broker.connection.is_connected
        checks["broker"] = "ok" if connected else "unreachable"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
        )

    asyncapi_json = orjson.dumps(asyncapi.to_specification().to_jsonable())

    @app.get("/asyncapi.json", tags=["operations"], include_in_schema=False)
    async def get_asyncapi() -> Response:
        return Response(asyncapi_json, media_type="application/json")

    app.add_middleware(AuthenticateFirst, verifier=app.state.verifier)  # innermost: logged and counted
    instrument(app, service_name=settings.service_name, max_body_bytes=settings.max_body_bytes)
    return app
