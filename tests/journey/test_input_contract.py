"""What the journey API accepts, checked against what its OpenAPI says: persona rule shapes, PATCH
with null, and the time bounds every date-time field and query parameter shares."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from tests.journey.activity_factories import touch
from tests.journey.factories import JourneyApi

NOT_OBJECTS: list[Any] = [None, [], "segment", 1, {"not": None}, {"all": [None]}, {"any": [{"all": [7]}]}]


class TestPersonaRules:
    @pytest.mark.parametrize("when", NOT_OBJECTS)
    async def test_a_condition_that_is_not_an_object_is_a_field_error(self, api: JourneyApi, when: Any) -> None:
        body = {"key": "p", "name": "P", "rules": [{"name": "r", "when": when}]}
        response = await api.post("/v1/personas", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"].startswith("body.rules.0.when")
        assert "must be an object" in response.json()["detail"]
        persona = await api.persona("q")
        patched = await api.patch(f"/v1/personas/{persona['id']}", json={"rules": body["rules"]})
        assert patched.status_code == 422, patched.text

    async def test_deeply_nested_conditions_are_refused_not_a_recursion_error(self, api: JourneyApi) -> None:
        when: dict[str, Any] = {"attribute": "a", "op": "eq", "value": 1}
        for _ in range(500):
            when = {"not": when}
        response = await api.post(
            "/v1/personas", json={"key": "p", "name": "P", "rules": [{"name": "r", "when": when}]}
        )
        assert response.status_code == 422, response.text
        assert "nest at most" in response.json()["detail"]

    async def test_contains_on_text_with_a_number_matches_no_one(self, api: JourneyApi) -> None:
        rule = {"name": "r", "when": {"attribute": "city", "op": "contains", "value": 1}}
        await api.persona("p", rules=[rule])
        response = await api.request("PUT", "/v1/customers/c1", json={"profile": {"city": "Berlin"}})
        assert response.status_code == 201, response.text
        assert response.json()["persona_id"] is None

    async def test_a_stored_rule_this_version_cannot_read_matches_no_one(
        self, api: JourneyApi, journey_app: FastAPI
    ) -> None:
        """Rules stored under older, looser validation must not fail every customer write."""
        readable = {"name": "ok", "when": {"attribute": "a", "op": "eq", "value": 1}}
        persona = await api.persona("p", rules=[readable])
        async with journey_app.state.engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE persona SET rules = CAST(:r AS jsonb) WHERE id = :id"),
                {"r": orjson.dumps([{"name": "old", "when": None}, readable]).decode(), "id": persona["id"]},
            )
        response = await api.request("PUT", "/v1/customers/c1", json={"profile": {"a": 1}})
        assert response.status_code == 201, response.text
        assert (response.json()["persona_id"], response.json()["persona_rule"]) == (persona["id"], "ok")


PATCHED = {
    "/v1/personas/{persona_id}",
    "/v1/touchpoints/{touchpoint_id}",
    "/v1/journeys/{journey_id}",
    "/v1/journeys/{journey_id}/stages/{stage_id}",
    "/v1/journeys/{journey_id}/steps/{step_id}",
}


def _patch_bodies(openapi: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for path, ops in openapi["paths"].items():
        if "patch" in ops:
            ref = ops["patch"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            out[path] = openapi["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]
    return out


async def _patch_urls(api: JourneyApi) -> dict[str, str]:
    """One object behind every PATCH route: the route's path template → the object's URL."""
    persona = await api.persona(role="Tenant", background="b")
    tp = await api.touchpoint(department="D", yearly_cost="10.00", description="d")
    journey = await api.journey(persona_id=persona["id"], owner="o", team="t", description="d")
    stage = (await api.stages(journey["id"]))[0]
    step = await api.step(journey["id"], stage["id"], tp["id"])
    return {
        "/v1/personas/{persona_id}": f"/v1/personas/{persona['id']}",
        "/v1/touchpoints/{touchpoint_id}": f"/v1/touchpoints/{tp['id']}",
        "/v1/journeys/{journey_id}": f"/v1/journeys/{journey['id']}",
        "/v1/journeys/{journey_id}/stages/{stage_id}": f"/v1/journeys/{journey['id']}/stages/{stage['id']}",
        "/v1/journeys/{journey_id}/steps/{step_id}": f"/v1/journeys/{journey['id']}/steps/{step['id']}",
    }


class TestPatchWithNull:
    async def test_null_clears_what_the_schema_lets_be_null_and_is_refused_elsewhere(self, api: JourneyApi) -> None:
        bodies = _patch_bodies((await api.get("/openapi.json")).json())
        assert set(bodies) == PATCHED  # a new PATCH route is checked here too
        urls = await _patch_urls(api)
        checked = 0
        for path, properties in bodies.items():
            for name, schema in properties.items():
                nullable = {"type": "null"} in schema.get("anyOf", [])
                response = await api.patch(urls[path], json={name: None})
                what = f"PATCH {path} {{{name!r}: null}}"
                if nullable:
                    assert response.status_code == 200, f"{what}: {response.text}"
                    assert response.json()[name] is None, what
                else:
                    assert response.status_code == 422, f"{what}: {response.text}"
                    assert response.json()["errors"][0]["field"] == f"body.{name}", what
                    assert "cannot be null" in response.json()["detail"], what
                checked += 1
        assert checked >= 30

    async def test_integers_and_booleans_are_json_integers_and_booleans(self, api: JourneyApi) -> None:
        # pydantic's lax mode read `false` as position 0 and `0` or "true" as a flag: not what the schema says
        urls = await _patch_urls(api)
        wrong = {"integer": [False, "1", 1.5], "boolean": [0, "true"]}
        checked = 0
        for path, properties in _patch_bodies((await api.get("/openapi.json")).json()).items():
            for name, schema in properties.items():
                kinds = {schema.get("type")} | {o.get("type") for o in schema.get("anyOf", [])}
                for value in [v for kind in kinds & set(wrong) for v in wrong[kind]]:
                    response = await api.patch(urls[path], json={name: value})
                    assert response.status_code == 422, f"PATCH {path} {{{name!r}: {value!r}}}: {response.text}"
                    checked += 1
        assert checked >= 10

    async def test_customer_put_with_null_follows_its_schema(self, api: JourneyApi) -> None:
        openapi = (await api.get("/openapi.json")).json()
        ref = openapi["paths"]["/v1/customers/{external_id}"]["put"]["requestBody"]["content"]["application/json"]
        properties = openapi["components"]["schemas"][ref["schema"]["$ref"].rsplit("/", 1)[1]]["properties"]
        for name, schema in properties.items():
            nullable = {"type": "null"} in schema.get("anyOf", [])
            response = await api.request("PUT", "/v1/customers/c1", json={name: None})
            assert response.status_code == (201 if nullable else 422), f"{name}: {response.text}"


BAD_TIMES = ["9999-12-31T00:00:00Z", "1899-12-31T23:59:59Z", "2100-01-01T00:00:00Z", 0.5, "0.5", 1_700_000_000]


class TestTimeBounds:
    @pytest.mark.parametrize("when", BAD_TIMES)
    async def test_event_times_outside_the_bounds_or_numbers_are_refused(self, api: JourneyApi, when: Any) -> None:
        await api.touchpoint("shop")
        one = await api.post("/v1/interactions", json=touch("e1", "c1", "shop", when))
        assert one.status_code == 422, one.text
        assert one.json()["errors"][0]["field"] == "body.occurred_at"
        outcome = {"event_id": "o1", "customer": "c1", "name": "purchase", "occurred_at": when}
        bulk = await api.post("/v1/outcomes/bulk", json={"items": [outcome]})
        assert bulk.json()["items"][0]["status"] == "failed", bulk.text

    @pytest.mark.parametrize("when", BAD_TIMES)
    async def test_consent_times_outside_the_bounds_or_numbers_are_refused(self, api: JourneyApi, when: Any) -> None:
        consent = {"purpose": "marketing", "granted": True, "at": when}
        response = await api.request("PUT", "/v1/customers/c1", json={"consents": [consent]})
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "body.consents.0.at"

    @pytest.mark.parametrize("view", ["funnel", "paths", "reach"])
    @pytest.mark.parametrize("param", ["since", "until"])
    @pytest.mark.parametrize("when", ["0.5", "9999-01-01T00:00:00Z", "1800-01-01T00:00:00Z"])
    async def test_range_bounds_outside_the_bounds_or_numbers_are_refused(
        self, api: JourneyApi, view: str, param: str, when: str
    ) -> None:
        journey = await api.journey()
        response = await api.get(f"/v1/journeys/{journey['id']}/{view}", params={param: when})
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == f"query.{param}"

    async def test_a_range_bound_without_offset_is_utc(self, api: JourneyApi) -> None:
        journey = await api.journey()
        response = await api.get(f"/v1/journeys/{journey['id']}/reach", params={"since": "2026-01-01T10:00:00"})
        assert response.status_code == 200, response.text
        assert response.json()["since"] == "2026-01-01T10:00:00Z"
