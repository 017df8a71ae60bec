"""What the journey API answers, in the shapes the whole product shares: lists are pages, bulk
endpoints answer the kit's BulkResult, every date-time ends in `Z`, amounts are decimal strings; and
what it refuses to break: a touchpoint with recorded history is not deleted."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from services.common.bulk import BulkResult, ItemStatus
from services.common.pagination import Page
from services.journey.models import StagePublic
from tests.journey.activity_factories import at, bulk, touch
from tests.journey.factories import JourneyApi

PYDANTIC_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")


def _times(doc: Any, path: str = "") -> list[tuple[str, str]]:
    """Every (path, value) of a field named *_at in a JSON document."""
    if isinstance(doc, dict):
        found = [(f"{path}.{k}", v) for k, v in doc.items() if k.endswith("_at") and isinstance(v, str)]
        return found + [t for k, v in doc.items() for t in _times(v, f"{path}.{k}")]
    if isinstance(doc, list):
        return [t for i, v in enumerate(doc) for t in _times(v, f"{path}[{i}]")]
    return []


class TestListsAndTimes:
    async def test_stages_are_a_page(self, api: JourneyApi) -> None:
        journey = await api.journey()
        response = await api.get(f"/v1/journeys/{journey['id']}/stages")
        page = Page[StagePublic].model_validate(response.json())
        assert [s.key for s in page.items] == ["need", "buy", "use"]
        assert page.next_cursor is None

    async def test_map_renders_every_time_as_the_other_responses_do(self, api: JourneyApi) -> None:
        persona = await api.persona()
        journey = await api.journey(persona_id=persona["id"])
        tp = await api.touchpoint()
        await api.step(journey["id"], (await api.stages(journey["id"]))[0]["id"], tp["id"])
        doc = (await api.get(f"/v1/journeys/{journey['id']}/map")).json()
        times = _times(doc)
        assert len(times) == 6
        assert [p for p, v in times if not PYDANTIC_UTC.match(v)] == []
        assert doc["journey"]["created_at"] == (await api.get(f"/v1/journeys/{journey['id']}")).json()["created_at"]
        assert doc["persona"]["updated_at"] == (await api.get(f"/v1/personas/{persona['id']}")).json()["updated_at"]
        got = (await api.get(f"/v1/touchpoints/{tp['id']}")).json()
        assert doc["stages"][0]["steps"][0]["touchpoint"]["created_at"] == got["created_at"]


class TestAmounts:
    async def test_yearly_cost_is_documented_as_a_decimal_string(self, api: JourneyApi) -> None:
        schemas = (await api.get("/openapi.json")).json()["components"]["schemas"]
        for name in ("TouchpointCreate", "TouchpointUpdate", "TouchpointPublic"):
            cost = schemas[name]["properties"]["yearly_cost"]
            kinds = [o for o in cost["anyOf"] if o != {"type": "null"}]
            assert [(k["type"], k["pattern"]) for k in kinds] == [("string", r"^\d{1,12}(\.\d{1,2})?$")], name

    async def test_an_amount_is_a_decimal_string_and_nothing_else(self, api: JourneyApi) -> None:
        tp = await api.touchpoint(yearly_cost="1200.5")
        assert tp["yearly_cost"] == "1200.50"
        for bad in ("1e3", "-5.00", "12.345", True, 1200.5, 1200):
            response = await api.post(
                "/v1/touchpoints", json={"key": "x", "name": "x", "channel": "web", "yearly_cost": bad}
            )
            assert response.status_code == 422, (bad, response.text)
            assert response.json()["errors"][0]["field"] == "body.yearly_cost"


class TestTouchpointWithHistory:
    async def test_a_touchpoint_with_interactions_is_not_deleted(self, api: JourneyApi) -> None:
        tp = await api.touchpoint("hotline", "phone")
        await bulk(api, "interactions", [touch("e1", "c1", "hotline", at())])
        response = await api.delete(f"/v1/touchpoints/{tp['id']}")
        assert response.status_code == 409, response.text
        assert "'hotline' has recorded interactions" in response.json()["detail"]
        assert response.json()["recorded"] == ["interactions"]
        assert (await api.get(f"/v1/touchpoints/{tp['id']}")).status_code == 200
        timeline = (await api.get("/v1/customers/c1/timeline")).json()["items"]
        assert [(i["touchpoint"], i["event_id"]) for i in timeline] == [("hotline", "e1")]

    async def test_a_touchpoint_with_outcomes_is_not_deleted(self, api: JourneyApi) -> None:
        tp = await api.touchpoint("shop")
        outcome = {"event_id": "o1", "customer": "c1", "name": "purchase", "occurred_at": at(), "touchpoint": "shop"}
        await bulk(api, "outcomes", [outcome])
        response = await api.delete(f"/v1/touchpoints/{tp['id']}")
        assert response.status_code == 409, response.text
        assert response.json()["recorded"] == ["outcomes"]

    async def test_a_touchpoint_without_history_is_deleted(self, api: JourneyApi) -> None:
        used = await api.touchpoint("used")
        unused = await api.touchpoint("unused")
        await bulk(api, "interactions", [touch("e1", "c1", "used", at())])
        assert (await api.delete(f"/v1/touchpoints/{unused['id']}")).status_code == 204
        assert (await api.get(f"/v1/touchpoints/{used['id']}")).status_code == 200


class TestBulkShape:
    async def test_every_bulk_endpoint_answers_the_kits_bulk_result(self, api: JourneyApi) -> None:
        await api.touchpoint("shop")
        answers = {
            "customers": await bulk(api, "customers", [{"external_id": "c1"}, {"external_id": 5}]),
            "interactions": await bulk(api, "interactions", [touch("e1", "c1", "shop", at()), {"event_id": "e2"}]),
            "outcomes": await bulk(
                api, "outcomes", [{"event_id": "o1", "customer": "c1", "name": "buy", "occurred_at": at()}, {}]
            ),
        }
        for kind, answer in answers.items():
            result = BulkResult.model_validate(answer)
            assert set(result.counts) == {s.value for s in ItemStatus}, kind
            assert [(i.index, i.status) for i in result.items] == [(0, ItemStatus.created), (1, ItemStatus.failed)]
            assert result.items[0].id is not None, kind
            assert result.items[1].errors, kind
        paths = (await api.get("/openapi.json")).json()["paths"]
        for kind in answers:
            schema = paths[f"/v1/{kind}/bulk"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/BulkResult"}, kind


class TestConcurrentCustomers:
    async def test_two_bulk_calls_creating_the_same_customers_both_succeed(self, api: JourneyApi) -> None:
        """The ingest's retry path: a customer created by the other call after this call's snapshot."""
        await api.touchpoint("shop")
        for round_ in range(3):
            customers = [f"r{round_}-c{i}" for i in range(300)]

            async def call(kind: str, tag: str, customers: list[str] = customers) -> Any:
                if kind == "interactions":
                    items = [touch(f"{tag}-{c}", c, "shop", at()) for c in customers]
                else:
                    items = [
                        {"event_id": f"{tag}-{c}", "customer": c, "name": "buy", "occurred_at": at()} for c in customers
                    ]
                return await api.post(f"/v1/{kind}/bulk", json={"items": items})

            responses = await asyncio.gather(
                call("interactions", f"a{round_}"), call("interactions", f"b{round_}"), call("outcomes", f"o{round_}")
            )
            for response in responses:
                assert response.status_code == 200, response.text
                assert response.json()["counts"]["created"] == 300, response.text
        stored: list[str] = []
        cursor: str | None = None
        while True:
            page = (
                await api.get("/v1/customers", params={"limit": 500, **({"cursor": cursor} if cursor else {})})
            ).json()
            stored += [c["external_id"] for c in page["items"]]
            if not (cursor := page["next_cursor"]):
                break
        assert sorted(stored) == sorted(f"r{r}-c{i}" for r in range(3) for i in range(300))
        timeline = (await api.get("/v1/customers/r2-c7/timeline")).json()["items"]
        assert sorted(i["event_id"] for i in timeline) == ["a2-r2-c7", "b2-r2-c7", "o2-r2-c7"]
