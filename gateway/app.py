"""The GraphQL gateway: one schema over the services' REST APIs, at `/graphql`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import orjson
from cross_web import AsyncHTTPRequestAdapter
from fastapi import FastAPI, Request
from starlette.requests import HTTPConnection
from strawberry.http import GraphQLRequestData

from gateway.cache import ResponseCache, follow
from gateway.events import EventHub
from gateway.live import LiveContext, LiveRouter
from gateway.safety import served_schema
from gateway.schema import Context
from gateway.services import Services
from gateway.settings import GatewaySettings
from gateway.trusted import TrustedDocuments
from services.common.auth import TokenVerifier
from services.common.errors import install_problem_handlers
from services.common.events import STREAMS
from services.common.telemetry import configure_logging, configure_tracing, instrument, telemetry_config


class Router(LiveRouter):
    """Requests and answers (de)serialised by orjson: a 10 x 200 view is about 1 MB of JSON, which the
    standard library's encoder takes several times as long to write. A request naming a trusted
    document by its hash runs that document (gateway/trusted.py)."""

    trusted: TrustedDocuments

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> GraphQLRequestData | list[GraphQLRequestData]:
        parsed = await super().parse_http_body(request)
        for one in parsed if isinstance(parsed, list) else [parsed]:
            self.trusted.resolve(one)
        return parsed

    def decode_json(self, data: str | bytes) -> object:
        return orjson.loads(data)  # orjson.JSONDecodeError is a json.JSONDecodeError: a 400 as before

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)


def create_app(settings: GatewaySettings | None = None, transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    configure_tracing("gateway", settings.otel_exporter_otlp_endpoint)
    services = Services(settings, transport)
    # Every event the services publish, for the subscriptions of this process (one connection).
    hub = EventHub(
        settings.nats_url,
        subjects=[s for subjects in STREAMS.values() for s in subjects],
        queue_size=settings.subscription_queue_size,
    )

    cache = (
        ResponseCache(max_entries=settings.response_cache_entries, ttl_seconds=settings.response_cache_seconds)
        if settings.response_cache_seconds > 0
        else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await hub.start()
        following = asyncio.create_task(follow(cache, hub)) if cache is not None else None
        try:
            yield
        finally:
            if following is not None:
                following.cancel()
            await hub.stop()
            await services.close()

    verifier = TokenVerifier(settings)

    async def context(connection: HTTPConnection) -> Context:
        if not isinstance(connection, Request):  # a WebSocket: its caller comes with connection_init
            return LiveContext(services, hub)
        # The caller is known before anything runs: a bad token is a 401 problem, not a GraphQL error.
        caller = await verifier.authenticate(connection)
        return Context(services=services, authorization=connection.headers["authorization"], caller=caller)

    # FastAPI's server span per request continues the caller's trace; Services passes it on.
    app = FastAPI(title="journeygraph gateway", lifespan=lifespan, telemetry=telemetry_config())
    app.state.services, app.state.cache = services, cache
    install_problem_handlers(app)
    instrument(app, service_name="gateway", max_body_bytes=settings.max_body_bytes)  # /metrics, body limit
    router = Router(
        served_schema(settings, cache),
        verifier=verifier,
        context_getter=context,
        graphql_ide=None if settings.production else "graphiql",
        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
    )
    router.trusted = TrustedDocuments.load(settings.trusted_documents, only=settings.trusted_documents_only)
    app.include_router(router, prefix="/graphql")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> dict[str, object]:
        return {"status": "ok", "checks": {}}  # no store of its own: a service down is an error where needed

    return app
