"""create_service_app: the FastAPI app every service is built from.

Lifespan: migrate (Alembic, advisory-locked) → engine → broker (streams, consumers) → outbox relay
→ the service's own background workers; shutdown in reverse.
Nothing happens at import time.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common.auth import TokenVerifier
from services.common.consumer import create_broker
from services.common.db import create_engine, create_sessionmaker
from services.common.errors import install_problem_handlers
from services.common.events import Event
from services.common.idempotency import IdempotentReplay, replay_response
from services.common.migrations import upgrade_to_head
from services.common.outbox import WAKE_KEY, OutboxRelay, ensure_streams
from services.common.settings import ServiceSettings
from services.common.telemetry import configure_logging, configure_tracing, instrument
from services.common.worker import Worker

ConsumerSetup = Callable[[NatsBroker, async_sessionmaker[AsyncSession], ServiceSettings], None]


# Builds the service's workers once the engine and sessionmaker exist (on app.state).
WorkerSetup = Callable[[FastAPI], Sequence[Worker]]


def tune_gc() -> None:
    """Fewer, cheaper garbage collections. A 10,000-item bulk call keeps ~200,000 objects alive
    until it answers; with CPython's default thresholds (700, 10, 10) that set off three full
    collections per call, each walking the whole heap: ~0.5 s of a 1.4 s call. Objects alive after
    start-up (modules, schemas, compiled statements) are frozen out of every collection, and the
    older generations are collected less often; cycles are still collected."""
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)


def create_service_app(
    *,
    title: str,
    description: str,
    settings: ServiceSettings,
    service_dir: Path,
    routers: Sequence[APIRouter],
    published_events: dict[str, type[BaseModel]],
    openapi_tags: list[dict[str, Any]] | None = None,
    setup_consumers: ConsumerSetup | None = None,
    setup_workers: WorkerSetup | None = None,
) -> FastAPI:
    configure_logging(level=settings.log_level, json=settings.log_json)
    configure_tracing(settings.service_name, settings.otel_exporter_otlp_endpoint)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await asyncio.to_thread(upgrade_to_head, service_dir, settings.database_url)
        engine = create_engine(settings.database_url)
        broker: NatsBroker = app.state.broker
        await broker.connect()
        js = broker.connection.jetstream()
        await ensure_streams(js, max_age_days=settings.stream_max_age_days)
        relay = OutboxRelay(engine, js, poll_seconds=settings.outbox_poll_seconds)
        sessionmaker = create_sessionmaker(engine)
        sessionmaker.kw["info"] = {WAKE_KEY: relay.wake}
        if setup_consumers is not None:
            setup_consumers(broker, sessionmaker, settings)
        await broker.start()
        relay.start()
        app.state.engine, app.state.sessionmaker, app.state.relay = engine, sessionmaker, relay
        workers = list(setup_workers(app)) if setup_workers is not None else []
        for worker in workers:
            worker.start()
        thresholds = gc.get_threshold()
        tune_gc()
        try:
            yield
        finally:
            # As before start-up: a process that starts apps again (tests) collects them as usual.
            gc.unfreeze()
            gc.set_threshold(*thresholds)
            for worker in reversed(workers):
                await worker.stop()
            await relay.stop()
            await broker.stop()
            await engine.dispose()

    app = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        openapi_tags=openapi_tags,
        responses={},
    )
    app.state.settings = settings
    app.state.verifier = TokenVerifier(settings)
    app.state.broker = broker = create_broker(settings.nats_url)
    for subject, model in published_events.items():
        # Documentation only: events are sent by the outbox relay, not through these publishers.
        broker.publisher(subject, schema=Event[model], title=subject)  # type: ignore[valid-type]
    asyncapi = AsyncAPI(broker, title=f"{title} events", version="0.1.0", description=description)

    install_problem_handlers(app)

    async def on_replay(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, IdempotentReplay)
        return replay_response(exc)

    app.add_exception_handler(IdempotentReplay, on_replay)
    for router in routers:
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

    instrument(app, service_name=settings.service_name, max_body_bytes=settings.max_body_bytes)
    return app
