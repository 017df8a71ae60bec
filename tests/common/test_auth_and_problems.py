"""Every failure is problem+json with a message a person can act on; never a 500 for bad input."""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.auth import generate_signing_key, mint_token
from services.common.db import ensure_database
from services.journey.app import create_app
from services.journey.settings import JourneySettings
from tests.conftest import Keys, Servers, unique_name

PROBLEM = "application/problem+json"


def requests_counted(metrics: httpx.Response, labels: dict[str, str]) -> float:
    """journeygraph_http_requests_total with exactly these labels, from a /metrics answer."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics.text)
        for sample in family.samples
        if sample.name == "journeygraph_http_requests_total" and sample.labels == labels
    )


def assert_problem(response: httpx.Response, status: int, *needles: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["type"].startswith("https://")
    for needle in needles:
        assert needle in body["detail"], body["detail"]


def _signed_by_another_algorithm(algorithm: str) -> str:
    """A token with good claims whose header names another algorithm than the service's Ed25519 key."""
    key: object = {
        "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
        "HS256": lambda: "a-shared-secret-of-at-least-32-bytes!",
    }[algorithm]()
    claims = {"iss": "journeygraph-dev", "aud": "journeygraph", "sub": "dev", "exp": int(time.time()) + 600,
              "workspace": "ws1", "scope": "admin"}  # fmt: skip
    return jwt.encode(claims, key, algorithm=algorithm)  # type: ignore[arg-type]


class TestAuthentication:
    async def test_missing_token_is_401_with_a_hint(self, journey_http: httpx.AsyncClient) -> None:
        response = await journey_http.get("/v1/journeys")
        assert_problem(response, 401, "Authorization: Bearer", "journeygraph token")
        assert response.headers["www-authenticate"] == "Bearer"

    async def test_garbage_token_is_401(self, journey_http: httpx.AsyncClient) -> None:
        response = await journey_http.get("/v1/journeys", headers={"Authorization": "Bearer abc.def.ghi"})
        assert_problem(response, 401, "not valid")

    async def test_expired_token_is_401(self, journey_http: httpx.AsyncClient, keys: Keys) -> None:
        token = keys.token("ws1", ["admin"], ttl_seconds=-120)
        response = await journey_http.get("/v1/journeys", headers={"Authorization": f"Bearer {token}"})
        assert_problem(response, 401, "expired")

    async def test_token_signed_by_another_key_is_401(self, journey_http: httpx.AsyncClient) -> None:
        stranger, _ = generate_signing_key()
        token = mint_token(stranger, workspace="ws1", scopes=["admin"])
        response = await journey_http.get("/v1/journeys", headers={"Authorization": f"Bearer {token}"})
        assert_problem(response, 401, "not valid")

    async def test_wrong_audience_and_issuer_are_401(self, journey_http: httpx.AsyncClient, keys: Keys) -> None:
        for kw, needle in (({"audience": "other-api"}, "audience"), ({"issuer": "evil"}, "issued by")):
            token = keys.token("ws1", ["admin"], **kw)
            response = await journey_http.get("/v1/journeys", headers={"Authorization": f"Bearer {token}"})
            assert_problem(response, 401, needle)

    @pytest.mark.parametrize("algorithm", ["RS256", "ES256", "HS256"])
    async def test_token_of_another_algorithm_than_the_key_is_401(
        self, journey_http: httpx.AsyncClient, algorithm: str
    ) -> None:
        token = _signed_by_another_algorithm(algorithm)
        response = await journey_http.get("/v1/journeys", headers={"Authorization": f"Bearer {token}"})
        assert_problem(response, 401, "not valid")

    async def test_unauthenticated_requests_with_broken_bodies_are_401_on_every_route(
        self, journey_app: FastAPI, journey_http: httpx.AsyncClient
    ) -> None:
        answers: dict[str, int] = {}
        for route in iter_route_contexts(journey_app.router.routes):
            path = route.path or ""
            for method in sorted((route.methods or set()) & {"POST", "PUT", "PATCH"}):
                if path.startswith("/v1/"):
                    url = re.sub(r"{[^}]+}", str(uuid.uuid4()), path)
                    response = await journey_http.request(
                        method, url, content=b'{"broken', headers={"content-type": "application/json"}
                    )
                    answers[f"{method} {path}"] = response.status_code
        assert len(answers) > 10  # every body route of the service
        assert {k: v for k, v in answers.items() if v != 401} == {}

    async def test_token_without_workspace_is_401(self, journey_http: httpx.AsyncClient, keys: Keys) -> None:
        token = keys.token("not a valid workspace!", ["admin"])
        response = await journey_http.get("/v1/journeys", headers={"Authorization": f"Bearer {token}"})
        assert_problem(response, 401, "workspace")


class TestScopes:
    async def test_read_scope_cannot_write(self, journey_http: httpx.AsyncClient, keys: Keys, workspace: str) -> None:
        headers = keys.headers(workspace, ["journeys:read"])
        assert (await journey_http.get("/v1/touchpoints", headers=headers)).status_code == 200
        response = await journey_http.post(
            "/v1/touchpoints", headers=headers, json={"key": "k", "name": "n", "channel": "web"}
        )
        assert_problem(response, 403, "journeys:write")

    async def test_other_services_scopes_do_not_open_journeys(
        self, journey_http: httpx.AsyncClient, keys: Keys, workspace: str
    ) -> None:
        response = await journey_http.get("/v1/journeys", headers=keys.headers(workspace, ["feedback:read"]))
        assert_problem(response, 403, "journeys:read")

    async def test_admin_scope_may_do_everything(
        self, journey_http: httpx.AsyncClient, keys: Keys, workspace: str
    ) -> None:
        response = await journey_http.post(
            "/v1/touchpoints",
            headers=keys.headers(workspace, ["admin"]),
            json={"key": "k", "name": "n", "channel": "web"},
        )
        assert response.status_code == 201


class TestBadInput:
    async def test_validation_errors_name_every_field(
        self, journey_http: httpx.AsyncClient, keys: Keys, workspace: str
    ) -> None:
        response = await journey_http.post(
            "/v1/touchpoints",
            headers=keys.headers(workspace, ["admin"]),
            json={"key": "Bad Key", "channel": "fax", "currency": "euro"},
        )
        assert_problem(response, 422, "body.key")
        fields = {e["field"] for e in response.json()["errors"]}
        assert fields == {"body.key", "body.name", "body.channel", "body.currency"}

    async def test_malformed_json_is_422_not_500(
        self, journey_http: httpx.AsyncClient, keys: Keys, workspace: str
    ) -> None:
        headers = {**keys.headers(workspace, ["admin"]), "content-type": "application/json"}
        response = await journey_http.post("/v1/touchpoints", headers=headers, content=b'{"key": ')
        assert_problem(response, 422)

    async def test_bad_uuid_and_cursor(self, journey_http: httpx.AsyncClient, keys: Keys, workspace: str) -> None:
        headers = keys.headers(workspace, ["admin"])
        assert_problem(await journey_http.get("/v1/journeys/not-a-uuid", headers=headers), 422, "path.journey_id")
        assert_problem(await journey_http.get("/v1/journeys", params={"cursor": "%%%"}, headers=headers), 422, "cursor")
        assert_problem(await journey_http.get("/v1/journeys", params={"limit": 0}, headers=headers), 422, "query.limit")

    async def test_unknown_route_and_method_are_problems(
        self, journey_http: httpx.AsyncClient, keys: Keys, workspace: str
    ) -> None:
        headers = keys.headers(workspace, ["journeys:read"])
        assert_problem(await journey_http.get("/v1/nothing-here", headers=headers), 404, "No route")
        assert_problem(await journey_http.put("/v1/journeys", headers=headers), 405, "PUT")

    async def test_405_allows_every_method_of_the_path(
        self, journey_http: httpx.AsyncClient, keys: Keys, workspace: str
    ) -> None:
        headers = keys.headers(workspace, ["journeys:read"])
        for method, path, allowed in (
            ("PUT", "/v1/touchpoints", "GET, POST"),  # two routes: Starlette named the first one's only
            ("PUT", f"/v1/touchpoints/{uuid.uuid4()}", "DELETE, GET, PATCH"),
            ("OPTIONS", "/v1/customers/bulk", "POST"),  # a concrete path wins over /v1/customers/{external_id}
        ):
            response = await journey_http.request(method, path, headers=headers)
            assert_problem(response, 405, allowed)
            assert response.headers["allow"] == allowed


@pytest.fixture(scope="module")
async def strict_app(journey_settings: JourneySettings, servers: Servers, own_nats: str) -> AsyncIterator[FastAPI]:
    """A second journey app with tight limits, on a database and a NATS of its own (on the session's,
    its relay and consumers would take part in the session app's events)."""
    url = servers.database_url(unique_name("jg_journey_strict"))
    await ensure_database(url)
    settings = journey_settings.model_copy(
        update={
            "rate_limit": "5/minute",
            "max_body_bytes": 2048,
            "database_pool_timeout_seconds": 1.0,
            "database_url": url,
            "nats_url": own_nats,
        }
    )
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60):
        yield app


@pytest.fixture(scope="module")
async def strict_http(strict_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=strict_app), base_url="http://strict") as client:
        yield client


class TestLimits:
    async def test_rate_limit_is_per_token_with_retry_after(
        self, strict_http: httpx.AsyncClient, keys: Keys, workspace: str
    ) -> None:
        headers = keys.headers(workspace, ["journeys:read"])
        statuses = [(await strict_http.get("/v1/journeys", headers=headers)).status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]
        limited = await strict_http.get("/v1/journeys", headers=headers)
        assert_problem(limited, 429, "5/minute")
        assert 1 <= int(limited.headers["retry-after"]) <= 61
        other = keys.headers(workspace, ["journeys:read"])  # same claims, new token: same subject → same bucket
        assert (await strict_http.get("/v1/journeys", headers=other)).status_code == 429
        someone_else = {"Authorization": f"Bearer {keys.token(workspace, ['journeys:read'], subject='other')}"}
        assert (await strict_http.get("/v1/journeys", headers=someone_else)).status_code == 200

    async def test_tokens_that_fail_to_authenticate_count_per_client_address(
        self, strict_http: httpx.AsyncClient
    ) -> None:
        token = _signed_by_another_algorithm("RS256")
        statuses = [
            (await strict_http.get("/v1/journeys", headers={"Authorization": f"Bearer {token}"})).status_code
            for _ in range(6)
        ]
        assert statuses == [401] * 5 + [429]
        assert 1 <= int((await strict_http.get("/v1/journeys")).headers["retry-after"]) <= 61

    async def test_an_exhausted_database_pool_is_503_with_retry_after(
        self, strict_app: FastAPI, strict_http: httpx.AsyncClient, keys: Keys, workspace: str
    ) -> None:
        engine: AsyncEngine = strict_app.state.engine
        async with contextlib.AsyncExitStack() as held:
            for _ in range(engine.pool.size()):  # type: ignore[attr-defined]
                await held.enter_async_context(engine.connect())
            started = time.monotonic()
            response = await strict_http.get("/v1/journeys", headers=keys.headers(workspace, ["journeys:read"]))
            waited = time.monotonic() - started
        assert_problem(response, 503, "busy", "retry")
        assert int(response.headers["retry-after"]) >= 1
        assert waited < 20  # the pool's timeout (1 s here), not a hang
        assert "QueuePool" not in response.text

    async def test_body_over_the_limit_is_413(self, strict_http: httpx.AsyncClient, keys: Keys, workspace: str) -> None:
        headers = keys.headers(workspace, ["admin"])
        body = {"key": "k", "name": "n", "channel": "web", "description": "x" * 4000}
        response = await strict_http.post("/v1/touchpoints", headers=headers, json=body)
        assert_problem(response, 413, "2048 bytes")

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while reading
            for _ in range(10):
                yield b" " * 500

        streamed = await strict_http.post(
            "/v1/touchpoints", headers={**headers, "content-type": "application/json"}, content=chunks()
        )
        assert_problem(streamed, 413)


class TestOperations:
    async def test_health_ready_metrics_asyncapi(self, journey_http: httpx.AsyncClient) -> None:
        assert (await journey_http.get("/healthz")).json() == {"status": "ok"}
        ready = (await journey_http.get("/readyz")).json()
        assert ready == {"status": "ready", "checks": {"database": "ok", "broker": "ok", "outbox": "ok"}}
        await journey_http.get("/v1/journeys")  # refused before routing: counted, as no route
        labels = {"service": "journey", "method": "GET", "route": "__unmatched__", "status": "401"}
        assert requests_counted(await journey_http.get("/metrics"), labels) >= 1
        spec = (await journey_http.get("/asyncapi.json")).json()
        assert spec["asyncapi"].startswith("3.")
        channels = {c["address"] for c in spec["channels"].values()}
        assert {"journey.journey.created", "journey.step.added", "journey.touchpoint.deleted"} <= channels

    async def test_metrics_and_spans_name_the_route_template_not_the_path(
        self, journey_http: httpx.AsyncClient, keys: Keys, workspace: str
    ) -> None:
        exporter = InMemorySpanExporter()
        provider = trace.get_tracer_provider()
        assert isinstance(provider, TracerProvider)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        missing = uuid.uuid4()
        headers = keys.headers(workspace, ["journeys:read"])
        assert (await journey_http.get(f"/v1/journeys/{missing}", headers=headers)).status_code == 404
        assert (await journey_http.get("/v1/no/such/route", headers=headers)).status_code == 404
        exporter.shutdown()
        names = {span.name: span.attributes for span in exporter.get_finished_spans() if span.kind.name == "SERVER"}
        assert dict(names["GET /v1/journeys/{journey_id}"] or {})["http.route"] == "/v1/journeys/{journey_id}"
        assert "GET" in names  # no route matched: the method alone
        assert not any(str(missing) in name for name in names)
        metrics = await journey_http.get("/metrics")
        labels = {"service": "journey", "method": "GET", "route": "/v1/journeys/{journey_id}", "status": "404"}
        assert requests_counted(metrics, labels) >= 1
        assert str(missing) not in metrics.text

    async def test_responses_carry_a_request_id(self, journey_http: httpx.AsyncClient) -> None:
        response = await journey_http.get("/healthz", headers={"X-Request-ID": "abc-123"})
        assert response.headers["x-request-id"] == "abc-123"
        assert len((await journey_http.get("/healthz")).headers["x-request-id"]) == 32
