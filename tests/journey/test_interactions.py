from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from services.common.events import MAX_EVENT_BYTES
from services.common.validation import FREEFORM_MAX_BYTES
from services.journey.api import interactions as interactions_api
from tests.conftest import Servers
from tests.events import published_events
from tests.journey.activity_factories import at, bulk, put_customer, touch
from tests.journey.factories import JourneyApi


class TestRecordInteraction:
    async def test_one_then_replay(self, api: JourneyApi) -> None:
        await api.touchpoint("shop", "web")
        first = await api.post("/v1/interactions", json=touch("e1", "c1", "shop", at()))
        assert first.status_code == 201, first.text
        assert first.json()["status"] == "created"
        again = await api.post("/v1/interactions", json=touch("e1", "c1", "shop", at(1)))
        assert again.status_code == 200, again.text
        assert again.json()["status"] == "duplicate"
        assert again.json()["id"] == first.json()["id"]
        # the unknown customer was created
        assert (await api.get("/v1/customers/c1")).status_code == 200

    async def test_unknown_touchpoint_is_422(self, api: JourneyApi) -> None:
        response = await api.post("/v1/interactions", json=touch("e1", "c1", "nope", at()))
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "body.touchpoint"

    async def test_naive_timestamp_is_422(self, api: JourneyApi) -> None:
        await api.touchpoint("shop", "web")
        response = await api.post("/v1/interactions", json=touch("e1", "c1", "shop", "2026-01-01T00:00:00"))
        assert response.status_code == 422


class TestBulkInteractions:
    async def test_per_item_errors_and_dedupe(self, api: JourneyApi) -> None:
        await api.touchpoint("shop", "web")
        await api.journey("bike")
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        soon = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
        batch: list[Any] = [
            touch("e1", "c1", "shop", at(), channel="app", journey="bike", properties={"page": "/"}),
            touch("e1", "c1", "shop", at(2)),  # replay within the batch
            touch("e2", "c1", "unknown", at()),
            touch("e3", "c1", "shop", future),
            touch("e4", "c1", "shop", soon),  # within the clock skew
            {"event_id": "e5", "customer": "c1"},
            "not an object",
            touch("e6", "c2", "shop", at(), journey="no-such-journey"),
        ]
        result = await bulk(api, "interactions", batch)
        assert result["counts"] == {"created": 2, "updated": 0, "stored": 0, "duplicate": 1, "conflict": 0, "failed": 5}
        items = result["items"]
        assert [i["status"] for i in items] == [
            "created",
            "duplicate",
            "failed",
            "failed",
            "created",
            "failed",
            "failed",
            "failed",
        ]
        assert items[1]["id"] == items[0]["id"]
        assert items[2]["errors"] == [
            {"field": "touchpoint", "message": "no touchpoint with key 'unknown' in this workspace"}
        ]
        assert items[3]["errors"][0]["field"] == "occurred_at"
        assert {e["field"] for e in items[5]["errors"]} == {"occurred_at", "touchpoint"}
        assert items[7]["errors"][0]["field"] == "journey"

        # replay across batches: acknowledged, not stored again
        again = await bulk(api, "interactions", [touch("e1", "c1", "shop", at()), touch("e7", "c1", "shop", at(3))])
        assert [i["status"] for i in again["items"]] == ["duplicate", "created"]
        assert again["items"][0]["id"] == items[0]["id"]
        timeline = (await api.get("/v1/customers/c1/timeline")).json()["items"]
        assert sorted(t["event_id"] for t in timeline) == ["e1", "e4", "e7"]
        e1 = next(t for t in timeline if t["event_id"] == "e1")
        assert e1["channel"] == "app"
        assert e1["journey"] == "bike"
        assert e1["properties"] == {"page": "/"}

    async def test_empty_and_oversized_batches_are_422(self, api: JourneyApi) -> None:
        assert (await api.post("/v1/interactions/bulk", json={"items": []})).status_code == 422
        too_many = [touch(f"e{i}", "c", "shop", at()) for i in range(10_001)]
        assert (await api.post("/v1/interactions/bulk", json={"items": too_many})).status_code == 422


class TestOutcomes:
    async def test_outcomes_bulk_and_replay(self, api: JourneyApi) -> None:
        await api.touchpoint("shop", "web")
        items = [
            {
                "event_id": "o1",
                "customer": "c1",
                "name": "purchase",
                "value": "99.90",
                "currency": "EUR",
                "touchpoint": "shop",
                "occurred_at": at(),
            },
            {"event_id": "o2", "customer": "c1", "name": "Bad Name", "occurred_at": at()},
            {"event_id": "o3", "customer": "c1", "name": "churn", "touchpoint": "gone", "occurred_at": at()},
        ]
        result = await bulk(api, "outcomes", items)
        assert [i["status"] for i in result["items"]] == ["created", "failed", "failed"]
        one = await api.post("/v1/outcomes", json=items[0])
        assert one.status_code == 200
        assert one.json()["status"] == "duplicate"


class TestEventsAndIdempotency:
    async def test_idempotency_key_returns_the_original_result(self, api: JourneyApi) -> None:
        await api.touchpoint("shop", "web")
        body = {"items": [touch("e1", "c1", "shop", at())]}
        headers = {"Idempotency-Key": "k1"}
        first = await api.post("/v1/interactions/bulk", json=body, headers=headers)
        second = await api.post("/v1/interactions/bulk", json=body, headers=headers)
        assert second.headers.get("Idempotent-Replayed") == "true"
        assert second.json() == first.json()


class TestInteractionIsolation:
    async def test_touchpoint_of_another_workspace_is_unknown(self, api: JourneyApi) -> None:
        await api.touchpoint("shop", "web")
        other = api.other()
        result = await bulk(other, "interactions", [touch("e1", "c1", "shop", at())])
        assert result["items"][0]["status"] == "failed"
        await put_customer(other, "c1")
        # the same event id in two workspaces is two events
        assert (await bulk(api, "interactions", [touch("e1", "c1", "shop", at())]))["counts"]["created"] == 1
        await other.touchpoint("shop", "web")
        assert (await bulk(other, "interactions", [touch("e1", "c1", "shop", at())]))["counts"]["created"] == 1


class TestRecordedEvents:
    async def test_events_carry_every_stored_item_once(
        self, api: JourneyApi, journey_app: FastAPI, servers: Servers
    ) -> None:
        await api.touchpoint("shop", "web")
        items = [touch(f"e{i}", f"c{i % 7}", "shop", at(i)) for i in range(1200)]
        await bulk(api, "interactions", items)
        await bulk(api, "interactions", [*items[:10], touch("late", "c0", "shop", at(-1))])
        await bulk(api, "outcomes", [{"event_id": "o1", "customer": "c0", "name": "purchase", "occurred_at": at()}])
        events = await published_events(journey_app, servers.nats_url, api.workspace)
        recorded = [e for e in events if e["type"] == "journey.interaction.recorded"]
        stored = [item for e in recorded for item in e["data"]["items"]]
        assert len(recorded) == 3  # 1,200 items split by size in two, then 1
        assert sorted(i["event_id"] for i in stored) == sorted([f"e{i}" for i in range(1200)] + ["late"])
        assert stored[0] == {**stored[0], "customer": "c0", "touchpoint": "shop", "channel": "web"}
        customers = [c for e in events if e["type"] == "journey.customer.upserted" for c in e["data"]["items"]]
        assert sorted(c["external_id"] for c in customers) == [f"c{i}" for i in range(7)]
        [outcome] = [e for e in events if e["type"] == "journey.outcome.recorded"]
        assert outcome["data"]["items"][0]["name"] == "purchase"

    async def test_a_call_over_the_byte_budget_is_split_and_every_part_reaches_the_stream(
        self, api: JourneyApi, journey_app: FastAPI, servers: Servers
    ) -> None:
        await api.touchpoint("shop", "web")
        note = "x" * 7000  # ~14 MB of items: some 60 events' worth
        items = [touch(f"e{i}", f"c{i % 50}", "shop", at(i), properties={"note": note}) for i in range(2000)]
        assert (await bulk(api, "interactions", items))["counts"]["created"] == 2000
        events = await published_events(journey_app, servers.nats_url, api.workspace)
        recorded = [e for e in events if e["type"] == "journey.interaction.recorded"]
        assert len(recorded) >= 2000 * 7000 // MAX_EVENT_BYTES
        assert sorted(i["event_id"] for e in recorded for i in e["data"]["items"]) == sorted(
            e["event_id"] for e in items
        )
        async with journey_app.state.engine.connect() as conn:
            sizes = (
                (
                    await conn.execute(
                        sa.text("SELECT length(payload) FROM outbox_event WHERE workspace_id = :w AND subject = :s"),
                        {"w": api.workspace, "s": "journey.interaction.recorded"},
                    )
                )
                .scalars()
                .all()
            )
        assert len(sizes) == len(recorded)
        assert max(sizes) <= MAX_EVENT_BYTES


class TestFreeformLimit:
    async def test_properties_over_the_limit_are_422_alone_and_fail_their_item_in_bulk(self, api: JourneyApi) -> None:
        await api.touchpoint("shop", "web")
        over, under = {"note": "x" * FREEFORM_MAX_BYTES}, {"note": "x" * (FREEFORM_MAX_BYTES - 100)}
        one = await api.post("/v1/interactions", json=touch("e1", "c1", "shop", at(), properties=over))
        assert one.status_code == 422, one.text
        assert one.json()["errors"][0]["field"] == "body.properties"
        result = await bulk(
            api,
            "interactions",
            [touch("e1", "c1", "shop", at(), properties=over), touch("e2", "c1", "shop", at(), properties=under)],
        )
        assert [i["status"] for i in result["items"]] == ["failed", "created"]
        assert result["items"][0]["errors"][0]["field"] == "properties"
        outcome = {"event_id": "o1", "customer": "c1", "name": "purchase", "occurred_at": at(), "properties": over}
        assert (await api.post("/v1/outcomes", json=outcome)).status_code == 422


class TestImport:
    async def test_ndjson_import_reports_each_line(self, api: JourneyApi, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(interactions_api, "IMPORT_CHUNK", 3)  # several transactions in one import
        await api.touchpoint("shop", "web")
        lines = [orjson.dumps(touch(f"e{i}", "c1", "shop", at(i))) for i in range(5)]
        body = b"\n".join([*lines[:2], b"{broken", b"", lines[0], *lines[2:], b'{"event_id": "x"}'])
        response = await api.post(
            "/v1/interactions/import", content=body, headers={"Content-Type": "application/x-ndjson"}
        )
        assert response.status_code == 200, response.text
        results = [orjson.loads(line) for line in response.text.splitlines()]
        by_line = {r["line"]: r for r in results if "line" in r}
        assert by_line[3]["status"] == "failed"
        assert by_line[3]["errors"][0]["field"] == "line"
        assert [by_line[n]["status"] for n in (1, 2, 5, 6, 7, 8, 9)] == [
            "created", "created", "duplicate", "created", "created", "created", "failed",
        ]  # fmt: skip
        assert results[-1] == {
            "counts": {"created": 5, "updated": 0, "stored": 0, "duplicate": 1, "conflict": 0, "failed": 2}
        }
        timeline = (await api.get("/v1/customers/c1/timeline")).json()["items"]
        assert len(timeline) == 5

    async def test_outcome_import(self, api: JourneyApi) -> None:
        body = orjson.dumps({"event_id": "o1", "customer": "c1", "name": "churn", "occurred_at": at()})
        response = await api.post("/v1/outcomes/import", content=body, headers={"Content-Type": "application/x-ndjson"})
        assert (
            response.text.splitlines()[-1]
            == '{"counts":{"created":1,"updated":0,"stored":0,"duplicate":0,"conflict":0,"failed":0}}'
        )


class TestUnstorableText:
    async def test_nul_and_lone_surrogates_fail_the_item_not_the_batch(self, api: JourneyApi) -> None:
        await api.touchpoint("shop", "web")
        body = (
            '{"items": ['
            '{"event_id": "e1", "customer": "c1", "touchpoint": "shop", "occurred_at": "2026-01-01T00:00:00Z",'
            ' "properties": {"note": "a\\u0000b"}},'
            '{"event_id": "e2", "customer": "c1", "touchpoint": "shop", "occurred_at": "2026-01-01T00:00:00Z",'
            ' "properties": {"note": "\\ud800"}},'
            '{"event_id": "e3\\u0000", "customer": "c1", "touchpoint": "shop", "occurred_at": "2026-01-01T00:00:00Z"},'
            '{"event_id": "e4", "customer": "c1", "touchpoint": "shop", "occurred_at": "2026-01-01T00:00:00Z"}'
            "]}"
        )
        response = await api.post("/v1/interactions/bulk", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        assert [i["status"] for i in response.json()["items"]] == ["failed", "failed", "failed", "created"]
