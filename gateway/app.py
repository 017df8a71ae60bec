"""The GraphQL gateway: one schema over the services' REST APIs, at `/graphql`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from strawberry.fastapi import GraphQLRouter

from gateway.safety import served_schema
from gateway.schema import Context
from gateway.services import Services
from gateway.settings import GatewaySettings
from services.common.auth import TokenVerifier
from services.common.errors import install_problem_handlers
from services.common.telemetry import configure_logging, configure_tracing, telemetry_config


def create_app(settings: GatewaySettings | None = None, transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    configure_tracing("gateway", settings.otel_exporter_otlp_endpoint)
    services = Services(settings, transport)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await services.close()

    verifier = TokenVerifier(settings)

    async def context(request: Request) -> Context:
        # The caller is known before anything runs: a bad token is a 401 problem, not a GraphQL error.
        caller = await verifier.authenticate(request)
        return Context(services=services, authorization=request.headers["authorization"], caller=caller)

    # FastAPI's server span per request continues the caller's trace; Services passes it on.
    app = FastAPI(title="journeygraph gateway", lifespan=lifespan, telemetry=telemetry_config())
    app.state.services = services
    install_problem_handlers(app)
    router = GraphQLRouter(
        served_schema(settings), context_getter=context, graphql_ide=None if settings.production else "graphiql"
    )
    app.include_router(router, prefix="/graphql")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> dict[str, object]:
        return {"status": "ok", "checks": {}}  # no store of its own: a service down is an error where needed

    return app
