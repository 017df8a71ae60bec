"""The memoised route lookups of the telemetry libraries answer what the libraries answer."""

from __future__ import annotations

import httpx
import opentelemetry.instrumentation.fastapi as otel_fastapi
import starlette_exporter.middleware as exporter
from fastapi import APIRouter, FastAPI

from services.common.routes import memoise_route_lookups
from services.common.telemetry import instrument


def _app() -> FastAPI:
    app = FastAPI()
    router = APIRouter(prefix="/v1")

    @router.get("/things/{thing_id}")
    async def get_thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @router.post("/things/bulk")
    async def add_things() -> dict[str, str]:
        return {}

    @router.get("/things")
    async def list_things() -> list[str]:
        return []

    app.include_router(router)
    return app


def _scopes(app: FastAPI) -> list[dict[str, object]]:
    requests = [
        ("GET", "/v1/things/1"),
        ("GET", "/v1/things/2"),
        ("POST", "/v1/things/bulk"),
        ("GET", "/v1/things/bulk"),  # the same path by another method: another route
        ("GET", "/v1/things"),
        ("DELETE", "/v1/things"),  # no route for the method
        ("GET", "/v1/nowhere"),
    ]
    return [
        {"type": "http", "app": app, "method": m, "path": p, "root_path": "", "headers": [], "query_string": b""}
        for m, p in requests
    ]


def test_memoised_lookups_answer_as_the_libraries_do() -> None:
    memoise_route_lookups()
    memoise_route_lookups()  # idempotent: wrapped once
    span_route, label_path = otel_fastapi._get_route_details, exporter.get_matching_route_path
    assert not hasattr(span_route.__wrapped__, "__wrapped__")  # type: ignore[attr-defined]
    assert not hasattr(label_path.__wrapped__, "__wrapped__")  # type: ignore[attr-defined]
    app = _app()
    scopes = _scopes(app)
    expected = [
        (span_route.__wrapped__(s), label_path.__wrapped__(s, app.router.routes))  # type: ignore[attr-defined]
        for s in scopes
    ]
    assert expected[0] == ("/v1/things/{thing_id}", "/v1/things/{thing_id}")
    assert expected[2][0] == "/v1/things/bulk"
    assert expected[3][0] == "/v1/things/{thing_id}"
    for _ in range(2):  # filled, then answered from the memo
        assert [(span_route(s), label_path(s, app.router.routes)) for s in scopes] == expected


async def test_metrics_label_requests_by_route_template() -> None:
    app = _app()
    instrument(app, service_name="routes-test", max_body_bytes=1024)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for thing in ("a", "b", "a"):
            assert (await client.get(f"/v1/things/{thing}")).status_code == 200
        assert (await client.post("/v1/things/bulk")).status_code == 200
        metrics = (await client.get("/metrics")).text
    lines = [line for line in metrics.splitlines() if line.startswith("starlette_requests_total{")]
    by_path = {line.split('path="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1]) for line in lines}
    assert by_path["/v1/things/{thing_id}"] == 3.0
    assert by_path["/v1/things/bulk"] == 1.0
    assert not any(p in ("/v1/things/a", "/v1/things/b") for p in by_path), by_path
