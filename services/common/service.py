"""create_service_app: the FastAPI app every service is built from.

Lifespan: migrate (Alembic, advisory-locked) → engine → outbox relay → broker, in the background
(streams, consumers, then the relay publishes) → the service's own background workers; shutdown in
reverse. The service serves without the broker: writes need only PostgreSQL.
Nothing happens at import time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from pydantic import BaseModel

from services.common import admin
from services.common.auth import AuthenticateFirst, TokenVerifier
from services.common.consumer import Consumer
from services.common.db import create_engine, create_sessionmaker
from services.common.errors import install_problem_handlers
from services.common.events import MAX_EVENT_BYTES, Event
from services.common.idempotency import IdempotentReplay, replay_response
from services.common.migrations import upgrade_to_head
from services.common.outbox import WAKE_KEY, ensure_streams
from services.common.pull import PullLoop, create_broker, pull_loops
from services.common.relay import OutboxRelay, backlog_seconds
from services.common.settings import ServiceSettings
from services.common.telemetry import configure_logging, configure_tracing, instrument, telemetry_config
from services.common.worker import Worker

log = structlog.get_logger(__name__)

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
        # Writes need only PostgreSQL (the outbox keeps their events): the relay starts now and
        # publishes once the broker is connected; until then it measures the backlog.
        relay = OutboxRelay(
            engine,
            service=settings.service_name,
            poll_seconds=settings.outbox_poll_seconds,
            max_attempts=settings.outbox_max_attempts,
            publish_timeout_seconds=settings.outbox_publish_timeout_seconds,
            idempotency_ttl_hours=settings.idempotency_ttl_hours,
        )
        sessionmaker = create_sessionmaker(engine)
        sessionmaker.kw["info"] = {WAKE_KEY: relay.wake}
        for loop in loops:
            loop.runner.bind(sessionmaker)
        app.state.engine, app.state.sessionmaker, app.state.relay = engine, sessionmaker, relay
        app.state.events_connected = asyncio.Event()
        relay.start()
        connecting = asyncio.create_task(_connect_events(app, settings, loops), name="connect events")
        # With the broker up this is done in a moment, and the service starts complete, as before.
        await asyncio.wait({connecting}, timeout=_CONNECT_WAIT_SECONDS)
        workers = list(setup_workers(app)) if setup_workers is not None else []
        for worker in workers:
            worker.start()
        try:
            yield
        finally:
            for worker in reversed(workers):
                await worker.stop()
            connecting.cancel()
            await asyncio.wait({connecting}, timeout=5)  # nats-py swallows a cancellation at times
            for loop in loops:
                await loop.stop()
            await relay.stop()
            try:
                await broker.stop()
            except Exception as exc:  # a hung broker does not hold up the shutdown
                log.warning("broker connection not closed cleanly", error=repr(exc))
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

    @app.api_route("/healthz", methods=["GET", "HEAD"], tags=["operations"], include_in_schema=False)
    async def check_alive() -> dict[str, str]:
        return {"status": "ok"}

    @app.api_route("/readyz", methods=["GET", "HEAD"], tags=["operations"], include_in_schema=False)
    async def check_ready(request: Request) -> JSONResponse:
        """503 only without the database: without the broker the service still takes writes (their
        events wait in the outbox), so it stays in rotation, "degraded" with what is missing."""
        checks = {"database": "ok", "broker": _broker_check(request.app), "outbox": "ok"}
        try:
            async with request.app.state.engine.connect() as conn, asyncio.timeout(2):
                waited = await backlog_seconds(conn)
            if waited > settings.outbox_stall_seconds:
                checks["outbox"] = (
                    f"not draining: the oldest unpublished event waits for {waited:.0f} s "
                    f"(over {settings.outbox_stall_seconds:g} s)"
                )
        except Exception as exc:
            checks["database"] = f"unreachable: {exc.__class__.__name__}"
            checks["outbox"] = "unknown"
        if checks["database"] != "ok":
            return JSONResponse({"status": "not ready", "checks": checks}, status_code=503)
        return JSONResponse(
            {"status": "ready" if all(v == "ok" for v in checks.values()) else "degraded", "checks": checks}
        )

    asyncapi_json = orjson.dumps(asyncapi.to_specification().to_jsonable())

    @app.get("/asyncapi.json", tags=["operations"], include_in_schema=False)
    async def get_asyncapi() -> Response:
        return Response(asyncapi_json, media_type="application/json")

    app.add_middleware(AuthenticateFirst, verifier=app.state.verifier)  # innermost: logged and counted
    instrument(app, service_name=settings.service_name, max_body_bytes=settings.max_body_bytes)
    return app


_CONNECT_WAIT_SECONDS = 3.0  # how long a start waits for the broker before it serves without


async def _connect_events(app: FastAPI, settings: ServiceSettings, loops: Sequence[PullLoop]) -> None:
    """Connect to the broker (retrying until it answers), then make the streams, start the consumers
    and give the relay the connection."""
    broker: NatsBroker = app.state.broker
    await broker.connect()
    while True:
        try:
            await ensure_streams(broker.connection, max_age_days=settings.stream_max_age_days)
            break
        except Exception as exc:
            log.warning("cannot create the event streams yet; retrying", error=repr(exc))
            await asyncio.sleep(1.0)
    await broker.start()
    app.state.relay.attach(broker.connection)
    for loop in loops:
        loop.start(broker.connection)
    app.state.events_connected.set()
    log.info("connected to the broker", url=settings.nats_url)


def _broker_check(app: FastAPI) -> str:
    if not app.state.events_connected.is_set():
        return "connecting: events wait in the outbox; streams, consumers and relay start once NATS answers"
    if not app.state.broker.connection.is_connected:
        return "unreachable: reconnecting; events wait in the outbox"
    return "ok"
