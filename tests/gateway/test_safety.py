"""What the gateway refuses before running a document, and what it hides after. The services are
stood in for by an httpx transport here: these tests are about the gateway's own answers (what the
services answer is checked against the real processes in test_unified_view.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest

from gateway.app import create_app
from gateway.settings import GatewaySettings

DEEP = '{ journey(key: "k") { stages { steps { touchpoint { key } score { csat { n } } } } } }'


@pytest.fixture
def ask(bearer: dict[str, str]) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def ask(
        query: str, handler: Callable[[httpx.Request], httpx.Response] | None = None, **settings: Any
    ) -> dict[str, Any]:
        def refuse(request: httpx.Request) -> httpx.Response:
            raise AssertionError(f"no service call expected: {request.url}")

        app = create_app(GatewaySettings(**settings), transport=httpx.MockTransport(handler or refuse))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            response = await client.post("/graphql", json={"query": query}, headers=bearer)
        body: dict[str, Any] = response.json()
        return body

    return ask


Ask = Callable[..., Awaitable[dict[str, Any]]]


class TestLimits:
    async def test_a_document_deeper_than_the_limit_is_refused_before_any_call(self, ask: Ask) -> None:
        body = await ask(DEEP, max_depth=4)
        assert body["errors"][0]["message"] == "'anonymous' exceeds maximum operation depth of 4"

    async def test_too_many_aliases_are_refused(self, ask: Ask) -> None:
        body = await ask('{ a: journey(key: "a") { id } b: journey(key: "b") { id } c: journey(key: "c") { id } }',
                          max_aliases=2)  # fmt: skip
        assert "aliases" in body["errors"][0]["message"]

    async def test_too_many_tokens_are_refused(self, ask: Ask) -> None:
        body = await ask("{ " + " ".join(f'j{i}: journey(key: "k{i}") {{ id }}' for i in range(60)) + " }",
                          max_tokens=200, max_aliases=100)  # fmt: skip
        assert "token" in body["errors"][0]["message"].lower()


class TestErrors:
    async def test_an_unexpected_failure_is_masked_with_a_reference(self, ask: Ask) -> None:
        def broken(request: httpx.Request) -> httpx.Response:
            raise RuntimeError("internal detail a caller must not see")

        body = await ask('{ journey(key: "k") { id } }', broken)
        [error] = body["errors"]
        assert "internal detail" not in orjson.dumps(body).decode()
        assert error["message"].startswith("Unexpected error; quote reference ")
        assert error["extensions"]["code"] == "INTERNAL"
        assert error["extensions"]["reference"] in error["message"]
        assert error["path"] == ["journey"]

    async def test_a_service_problem_stays_readable(self, ask: Ask) -> None:
        def unavailable(request: httpx.Request) -> httpx.Response:
            problem = {"type": "about:blank", "title": "Service Unavailable", "status": 503, "detail": "database busy"}
            return httpx.Response(503, json=problem, headers={"content-type": "application/problem+json"})

        body = await ask('{ journey(key: "k") { id } }', unavailable)
        [error] = body["errors"]
        assert error["message"] == "The journey service answered: database busy"
        assert error["extensions"]["status"] == 503
        assert error["extensions"]["service"] == "journey"
        assert body["data"] == {"journey": None}

    async def test_a_callers_mistake_is_said_as_it_is(self, ask: Ask) -> None:
        body = await ask('{ journey(id: "x", key: "k") { id } }')
        assert body["errors"][0]["message"] == "Give the journey's id or its key, not both and not neither."


class TestProduction:
    async def test_introspection_and_the_ide_are_off(self, ask: Ask) -> None:
        body = await ask("{ __schema { types { name } } }", production=True)
        assert "introspection" in body["errors"][0]["message"].lower()
        app = create_app(GatewaySettings(production=True))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            page = await client.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code != 200

    async def test_introspection_is_on_in_development(self, ask: Ask) -> None:
        body = await ask("{ __schema { queryType { name } } }")
        assert body["data"]["__schema"]["queryType"]["name"] == "Query"


class TestCaller:
    async def test_a_request_without_a_valid_token_is_a_401_problem(self) -> None:
        app = create_app(GatewaySettings())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            for headers in ({}, {"Authorization": "Bearer not-a-token"}):
                response = await client.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
                assert response.status_code == 401
                assert response.headers["content-type"] == "application/problem+json"
                assert response.json()["detail"]
