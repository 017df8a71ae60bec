"""JSON logs with request and trace ids, Prometheus metrics, OpenTelemetry tracing, body limit."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request, Response
from fastapi.telemetry import TelemetryConfig
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uuid_utils.compat import uuid4

from services.common.errors import PROBLEM_JSON

access_log = structlog.get_logger("journeygraph.access")


def configure_logging(*, level: str = "INFO", json: bool = True) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=lambda o, **_: orjson.dumps(o).decode())
        if json
        else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def configure_tracing(service_name: str, otlp_endpoint: str | None) -> None:
    """A tracer provider always (trace ids in logs and events); an OTLP exporter when configured."""
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    trace.set_tracer_provider(provider)


REQUESTS = Counter("journeygraph_http_requests", "HTTP requests answered.", ["service", "method", "route", "status"])
DURATION = Histogram(
    "journeygraph_http_request_duration_seconds", "Time to answer an HTTP request.", ["service", "method", "route"]
)
IN_PROGRESS = Gauge("journeygraph_http_requests_in_progress", "HTTP requests being answered.", ["service"])
UNMATCHED = "__unmatched__"


class RequestContextMiddleware:
    """Binds request and trace ids to every log line, echoes X-Request-ID, logs one access line, and
    counts the request in Prometheus (but the operations endpoints).

    The metrics are labelled with the route template the router matched (`scope["route"]`, which
    Starlette's router sets), not the raw path: ids in paths would make every request a label of its
    own. Ours, not starlette-exporter's: that one matches the request against every route again to find
    the template (costly per request, docs/engineering-notes.md)."""

    def __init__(self, app: ASGIApp, *, service: str, unmeasured: frozenset[str]) -> None:
        self.app = app
        self.service = service
        self.unmeasured = unmeasured

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:128] or uuid4().hex
        span_context = trace.get_current_span().get_span_context()
        structlog.contextvars.bind_contextvars(
            request_id=request_id,
            trace_id=format(span_context.trace_id, "032x") if span_context.is_valid else None,
        )
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        measured = scope["path"] not in self.unmeasured
        in_progress = IN_PROGRESS.labels(self.service)
        if measured:
            in_progress.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            method = scope["method"]
            access_log.info(
                "request", method=method, path=scope["path"], status=status, duration_ms=round(seconds * 1000, 2)
            )
            structlog.contextvars.clear_contextvars()
            if measured:
                in_progress.dec()
                route = getattr(scope.get("route"), "path", None) or UNMATCHED
                REQUESTS.labels(self.service, method, route, str(status)).inc()
                DURATION.labels(self.service, method, route).observe(seconds)


async def get_metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuses request bodies over the limit with 413 problem+json, before or while reading them."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        started = exceeded = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:  # the app turned our exception into its own error: answer 413 instead
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._refuse(send)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = orjson.dumps(
            {
                "type": "https://journeygraph.dev/problems/payload-too-large",
                "title": "Content Too Large",
                "status": 413,
                "detail": f"The request body is over the limit of {self.max_bytes} bytes; "
                "split it into several requests.",
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


OPERATIONS = frozenset({"/metrics", "/healthz", "/readyz"})  # neither traced nor counted


def telemetry_config() -> TelemetryConfig:
    """FastAPI's own OpenTelemetry server spans (named and attributed with the matched route): one span
    per request, no spans per dependency or serialisation step, no OpenTelemetry logs (structlog
    writes ours), nothing for the operations endpoints."""
    return {"operation_spans": False, "logs": False, "exclude": lambda scope: scope.get("path") in OPERATIONS}


def instrument(app: FastAPI, *, service_name: str, max_body_bytes: int) -> None:
    """Middleware from the inside out: body limit, then request ids, access log and route metrics
    (the server span around them is FastAPI's, see `telemetry_config`)."""
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(RequestContextMiddleware, service=service_name, unmeasured=OPERATIONS)
    app.add_route("/metrics", get_metrics, include_in_schema=False)
