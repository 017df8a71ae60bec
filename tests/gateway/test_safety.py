"""What the gateway refuses before running a document, and what it hides after. The services are
stood in for by an httpx transport here: these tests are about the gateway's own answers (what the
services answer is checked against the real processes in test_unified_view.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.app import create_app
from gateway.settings import GatewaySettings
from gateway.trusted import document_hash
from tests.conftest import Keys
from tests.gateway.test_services import JOURNEY_ID, MAP

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


class TestScopes:
    async def test_the_callers_scopes_decide_which_fields_resolve(self, keys: Keys) -> None:
        """A token for the journey service only: the map is there; scores and metrics are errors at
        their fields, and neither the scoring nor the feedback service is called."""
        called: list[str] = []

        def journey_only(request: httpx.Request) -> httpx.Response:
            called.append(request.url.path)
            return httpx.Response(200, json={"items": [MAP], "not_found": []})

        app = create_app(GatewaySettings(), transport=httpx.MockTransport(journey_only))
        query = "query($id: ID!) { journey(id: $id) { key stages { steps { score { reach } nps { n } } } } }"
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            response = await client.post(
                "/graphql", json={"query": query, "variables": {"id": JOURNEY_ID}},
                headers=keys.headers("gw", ["journeys:read"]),
            )  # fmt: skip
        body = response.json()
        assert called == ["/v1/journey-maps"]
        assert body["data"]["journey"] == {"key": "j", "stages": [{"steps": [{"score": None, "nps": None}]}]}
        by_path = {tuple(e["path"]): e for e in body["errors"]}
        assert set(by_path) == {
            ("journey", "stages", 0, "steps", 0, "score"),
            ("journey", "stages", 0, "steps", 0, "nps"),
        }
        assert by_path[("journey", "stages", 0, "steps", 0, "score")]["extensions"]["scope"] == "scores:read"
        assert by_path[("journey", "stages", 0, "steps", 0, "nps")]["extensions"]["scope"] == "feedback:read"
        assert {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN"}


class TestCost:
    async def test_a_page_costs_its_size_times_its_node(self, ask: Ask) -> None:
        node = "{ journeys(first: %d) { edges { node { key name } } } }"
        small = await ask(node % 10, max_cost=50, handler=lambda _: httpx.Response(200, json=PAGE))
        assert "errors" not in small, small  # 10 × (journeys, edges, node, key, name) = 50
        large = await ask(node % 11, max_cost=50)
        [error] = large["errors"]
        assert error["extensions"] == {"code": "COST_LIMIT", "cost": 55, "limit": 50}
        assert "fewer items" in error["message"]

    async def test_a_list_without_first_counts_the_assumed_size(self, ask: Ask) -> None:
        # journey 1 + stages 5 × (1 + steps 5 × (1 + key 1)) = 1 + 5 × 11 = 56
        body = await ask('{ journey(key: "k") { stages { steps { id } } } }', max_cost=55, assumed_list_size=5)
        assert body["errors"][0]["extensions"]["cost"] == 56


PAGE: dict[str, Any] = {"items": [], "next_cursor": None}


class TestDocuments:
    async def test_batching_is_off(self, bearer: dict[str, str]) -> None:
        app = create_app(GatewaySettings())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            response = await client.post("/graphql", json=[{"query": "{ __typename }"}] * 2, headers=bearer)
        assert response.status_code == 400

    async def test_field_suggestions_are_off_in_production(self, ask: Ask) -> None:
        development = await ask('{ journey(key: "k") { nam } }')
        assert "Did you mean" in development["errors"][0]["message"]
        production = await ask('{ journey(key: "k") { nam } }', production=True)
        assert "Did you mean" not in production["errors"][0]["message"]

    async def test_only_trusted_documents_run_when_required(self, bearer: dict[str, str], tmp_path: Path) -> None:
        trusted = "{ __typename }"
        manifest = tmp_path / "trusted.json"
        manifest.write_bytes(orjson.dumps({document_hash(trusted): trusted}))
        app = create_app(GatewaySettings(trusted_documents=str(manifest), trusted_documents_only=True))
        by_hash = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": document_hash(trusted)}}}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            asked = await client.post("/graphql", json=by_hash, headers=bearer)
            assert asked.json() == {"data": {"__typename": "Query"}}
            as_text = await client.post("/graphql", json={"query": trusted}, headers=bearer)
            assert as_text.json() == {"data": {"__typename": "Query"}}
            other = await client.post("/graphql", json={"query": "{ journeys { edges { cursor } } }"}, headers=bearer)
            assert other.status_code == 400
            assert "Only trusted documents" in other.text
            unknown = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}}
            missing = await client.post("/graphql", json=unknown, headers=bearer)
            assert missing.status_code == 400
            assert "PersistedQueryNotFound" in missing.text

    def test_a_manifest_must_name_each_document_by_its_hash(self, tmp_path: Path) -> None:
        manifest = tmp_path / "trusted.json"
        manifest.write_bytes(orjson.dumps({"0" * 64: "{ __typename }"}))
        with pytest.raises(ValueError, match="not the sha256"):
            create_app(GatewaySettings(trusted_documents=str(manifest)))

    async def test_a_subscription_over_http_says_where_it_runs(self, ask: Ask) -> None:
        body = await ask(f'subscription {{ npsUpdated(journeyId: "{JOURNEY_ID}") {{ n }} }}')
        assert body["errors"][0]["message"].startswith("Subscriptions run over a WebSocket")
