"""The fast path (gateway/fast.py) answers exactly what graphql-core answers, data and errors: for the
hand-written views over services that answer well, answer badly (nulls where the schema says
non-null, values of the wrong type) or not at all; and, over the real services with a scored journey,
for queries that select every field the schema has (built from the schema itself, so a new field is
in them the day it is added)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from graphql import (
    GraphQLField,
    GraphQLNamedType,
    GraphQLObjectType,
    Undefined,
    get_named_type,
    is_leaf_type,
    is_non_null_type,
    is_object_type,
)
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from gateway.app import create_app
from gateway.graph import schema
from gateway.settings import GatewaySettings
from tests.gateway.test_services import JOURNEY_ID, MAP, SCORES
from tests.gateway.test_unified_view import VIEW_QUERY
from tests.scoring.factories import Stack, small_journey

Handler = Callable[[httpx.Request], httpx.Response]


def every_field(type_: GraphQLObjectType, depth: int, seen: tuple[str, ...] = ()) -> str:
    """A selection of every field of `type_` that needs no argument, objects to `depth` levels (a
    type is not entered again below itself)."""
    parts = ["__typename"]
    for name, field in type_.fields.items():
        if any(is_non_null_type(a.type) and a.default_value is Undefined for a in field.args.values()):
            continue
        inner: GraphQLNamedType = get_named_type(field.type)
        if is_leaf_type(inner):
            parts.append(name)
        elif is_object_type(inner) and depth > 0 and inner.name not in seen:
            assert isinstance(inner, GraphQLObjectType)
            parts.append(f"{name} {{ {every_field(inner, depth - 1, (*seen, type_.name))} }}")
    return " ".join(parts)


def whole(field: str, arguments: str) -> str:
    root: GraphQLField = schema._schema.query_type.fields[field]  # type: ignore[union-attr]
    inner = get_named_type(root.type)
    assert isinstance(inner, GraphQLObjectType)
    return f"{{ {field}{arguments} {{ {every_field(inner, 6)} }} }}"


SHAPES = (
    "query($id: ID!) { journey(id: $id) { stages { steps { a: score { reach } b: score { reach quadrant } "
    "...on Step { nps { n } } touchpoint { __typename key } csat @include(if: false) { n } "
    "ces @skip(if: false) { value } } } } }"
)


def _answer(groups: list[dict[str, Any]], scores: dict[str, Any] | None, feedback_down: bool = False) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/journey-maps":
            return httpx.Response(200, json={"items": [MAP], "not_found": []})
        if path == "/v1/scores":
            return httpx.Response(200, json={"items": [scores] if scores else [], "not_found": []})
        if path.startswith("/v1/metrics/") and not feedback_down:
            metric = {"method": "wilson", "as_of": "2026-12-01T10:00:00+00:00", "groups": groups}
            return httpx.Response(200, json=metric)
        return httpx.Response(503, json={"title": "Service Unavailable", "status": 503, "detail": "down"})

    return handler


GROUP = {"group": {"journey": "j", "touchpoint": "t"}, "n": 12, "value": 25.0, "interval_low": 2.5,
         "interval_high": 47.5}  # fmt: skip


def _scores(**changes: Any) -> dict[str, Any]:
    scores: dict[str, Any] = copy.deepcopy(SCORES)
    scores["touchpoints"][0].update(changes)
    return scores


SCENARIOS: dict[str, Handler] = {
    "every service answers": _answer([GROUP], _scores()),
    "no scores yet, no answers": _answer([], None),
    "the feedback service is down": _answer([GROUP], _scores(), feedback_down=True),
    "a null where the schema says non-null": _answer([GROUP], _scores(reach=None)),
    "values of other types": _answer([dict(GROUP, n=12.0, value=25)], _scores(quadrant=5, reach=1, reach_n=2.5)),
}
# Over stand-in services that answer the unified view's reads; every field of the schema is compared
# over the real services (test_over_the_real_services).
DOCUMENTS = {
    "the unified view": VIEW_QUERY.replace("$key: String!", "$id: ID!").replace("key: $key", "id: $id"),
    "aliases, fragments, directives": SHAPES,
}


LIMITS_OFF: dict[str, Any] = {"max_tokens": 100_000, "max_depth": 50, "max_aliases": 100, "max_cost": 10**9}


def _without_references(body: dict[str, Any]) -> dict[str, Any]:
    """A masked error's reference is new each time: compare the rest."""
    for error in body.get("errors", []):
        if error.get("extensions", {}).get("reference"):
            error["message"] = error["message"].replace(error["extensions"].pop("reference"), "<reference>")
    return body


async def _both(handler: Handler, body: dict[str, Any], headers: dict[str, str]) -> list[Any]:
    answers = []
    for fast in (False, True):
        settings = GatewaySettings(fast_execution=fast, log_level="CRITICAL", **LIMITS_OFF)
        app = create_app(settings, transport=httpx.MockTransport(handler))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            response = await client.post("/graphql", json=body, headers=headers)
        await app.state.services.close()
        answers.append(_without_references(orjson.loads(response.content)))
    return answers


@pytest.mark.parametrize("document", DOCUMENTS)
@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_fast_and_standard_execution_answer_the_same(
    scenario: str, document: str, bearer: dict[str, str]
) -> None:
    body = {"query": DOCUMENTS[document], "variables": {"id": JOURNEY_ID}}
    standard, fast = await _both(SCENARIOS[scenario], body, bearer)
    assert fast == standard
    assert standard["data"]["journey"] is not None, standard  # the services' answers reached the steps


async def test_the_scenarios_do_produce_errors(bearer: dict[str, str]) -> None:
    body = {"query": DOCUMENTS["the unified view"], "variables": {"id": JOURNEY_ID}}
    for scenario in ("the feedback service is down", "a null where the schema says non-null",
                     "values of other types"):  # fmt: skip
        standard, fast = await _both(SCENARIOS[scenario], body, bearer)
        assert standard["errors"], scenario
        assert fast == standard, scenario


async def test_the_fast_path_is_taken(bearer: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Parity would hold if the fast path always gave up: graphql-core completes no list of steps when
    every service answers, and all of them when one does not."""
    completed: list[str] = []
    standard = StrawberryGraphQLCoreExecutionContext.complete_list_value

    def counted(self: Any, return_type: Any, details: Any, info: Any, *args: Any) -> Any:
        completed.append(info.field_name)
        return standard(self, return_type, details, info, *args)

    monkeypatch.setattr(StrawberryGraphQLCoreExecutionContext, "complete_list_value", counted)
    body = {"query": DOCUMENTS["the unified view"], "variables": {"id": JOURNEY_ID}}
    answer, _ = await _both(SCENARIOS["every service answers"], body, bearer)
    assert answer["data"]["journey"]["stages"], answer
    assert completed == ["stages", "steps"]  # the standard execution only
    completed.clear()
    await _both(SCENARIOS["the feedback service is down"], body, bearer)
    assert completed == ["stages", "steps"] * 2  # the fast one gave up and completed it the standard way


class Recorded(httpx.AsyncBaseTransport):
    """The real services' answers, recorded while the standard execution asks for them and replayed for
    the fast one: both complete the very same data (some fields carry the moment they were computed)."""

    def __init__(self) -> None:
        self.real = httpx.AsyncHTTPTransport()
        self.answers: dict[str, tuple[int, bytes]] = {}
        self.replaying = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.replaying:
            status, content = self.answers[str(request.url)]
            return httpx.Response(status, content=content, headers={"content-type": "application/json"})
        response = await self.real.handle_async_request(request)
        content = await response.aread()
        self.answers[str(request.url)] = (response.status_code, content)
        return httpx.Response(response.status_code, content=content, headers=response.headers)


async def test_over_the_real_services(processes: dict[str, str], stack: Stack) -> None:
    await small_journey(stack)
    for document in (whole("journey", '(key: "buy-a-bike")'), whole("journeys", "(first: 5)")):
        recorded = Recorded()
        answers = []
        for fast in (False, True):
            settings = GatewaySettings(
                fast_execution=fast, log_level="CRITICAL", journey_url=processes["journey"],
                feedback_url=processes["feedback"], scoring_url=processes["scoring"], **LIMITS_OFF,
            )  # fmt: skip
            app = create_app(settings, transport=recorded)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
                response = await client.post("/graphql", json={"query": document}, headers=stack.headers)
            answers.append(orjson.loads(response.content))
            recorded.replaying = True
        standard, fast_answer = answers
        assert "errors" not in standard, standard
        assert fast_answer == standard
        assert standard["data"]
