"""Every committed change publishes exactly one event, naming its aggregate and the aggregate's
version after the change; a rolled-back change publishes none."""

from __future__ import annotations

from fastapi import FastAPI

from tests.conftest import Servers
from tests.events import published_events
from tests.journey.factories import JourneyApi


class TestPublishedEvents:
    async def test_each_committed_change_publishes_exactly_one_event(
        self, api: JourneyApi, journey_app: FastAPI, servers: Servers
    ) -> None:
        persona = await api.persona()
        tp = await api.touchpoint()
        journey = await api.journey(persona_id=persona["id"])
        stage = (await api.post(f"/v1/journeys/{journey['id']}/stages", json={"key": "loyal", "name": "Loyal"})).json()
        step = await api.step(journey["id"], stage["id"], tp["id"])
        await api.patch(f"/v1/journeys/{journey['id']}/steps/{step['id']}", json={"moment_of_truth": True})
        await api.delete(f"/v1/journeys/{journey['id']}/steps/{step['id']}")
        await api.delete(f"/v1/journeys/{journey['id']}")
        events = await published_events(journey_app, servers.nats_url, api.workspace)
        assert [e["type"] for e in events] == [
            "journey.persona.created",
            "journey.touchpoint.created",
            "journey.journey.created",
            "journey.stage.added",
            "journey.step.added",
            "journey.step.updated",
            "journey.step.removed",
            "journey.journey.deleted",
        ]
        assert len({e["id"] for e in events}) == len(events)
        # a stage's or step's event is its journey's; a deletion is the last version + 1
        j = journey["id"]
        assert [(e["aggregate_id"], e["version"]) for e in events] == [
            (persona["id"], 1), (tp["id"], 1), (j, 1), (j, 2), (j, 3), (j, 4), (j, 5), (j, 6),
        ]  # fmt: skip
        created = events[2]["data"]
        assert created["journey"]["id"] == journey["id"]
        assert [s["key"] for s in created["stages"]] == ["need", "buy", "use"]
        assert events[3]["data"]["stage"]["key"] == "loyal"
        assert len(events[3]["data"]["stages"]) == 4
        assert events[5]["data"]["moment_of_truth"] is True
        # the trace context of the request travels with the event
        assert events[0]["_headers"]["traceparent"].startswith("00-")
        assert events[0]["_headers"]["Nats-Msg-Id"] == events[0]["id"]

    async def test_rejected_change_publishes_nothing(
        self, api: JourneyApi, journey_app: FastAPI, servers: Servers
    ) -> None:
        await api.touchpoint("shop")
        assert (
            await api.post("/v1/touchpoints", json={"key": "shop", "name": "x", "channel": "web"})
        ).status_code == 409
        journey = await api.journey()
        stage = (await api.stages(journey["id"]))[0]
        foreign = await api.other().touchpoint()
        bad_step = await api.post(
            f"/v1/journeys/{journey['id']}/steps", json={"stage_id": stage["id"], "touchpoint_id": foreign["id"]}
        )
        assert bad_step.status_code == 422
        events = await published_events(journey_app, servers.nats_url, api.workspace)
        assert [e["type"] for e in events] == ["journey.touchpoint.created", "journey.journey.created"]

    async def test_idempotent_replay_publishes_no_second_event(
        self, api: JourneyApi, journey_app: FastAPI, servers: Servers
    ) -> None:
        body = {"key": "portal", "name": "Portal", "channel": "partner"}
        for _ in range(3):
            response = await api.post("/v1/touchpoints", json=body, headers={"Idempotency-Key": "k-1"})
            assert response.status_code == 201
        events = await published_events(journey_app, servers.nats_url, api.workspace)
        assert [e["type"] for e in events] == ["journey.touchpoint.created"]


class TestVersions:
    async def test_every_change_bumps_the_version_its_event_and_shape_carry(
        self, api: JourneyApi, journey_app: FastAPI, servers: Servers
    ) -> None:
        persona = await api.persona()
        tp = await api.touchpoint()
        journey = await api.journey()
        assert (persona["version"], tp["version"], journey["version"]) == (1, 1, 1)
        for n in range(2):
            assert (await api.patch(f"/v1/personas/{persona['id']}", json={"name": f"P{n}"})).json()["version"] == n + 2
        assert (await api.patch(f"/v1/touchpoints/{tp['id']}", json={"yearly_cost": "10.00"})).json()["version"] == 2
        stage = (await api.stages(journey["id"]))[0]
        await api.patch(f"/v1/journeys/{journey['id']}/stages/{stage['id']}", json={"name": "Bedarf"})
        assert (await api.get(f"/v1/journeys/{journey['id']}")).json()["version"] == 2  # its stage changed
        doc = (await api.get(f"/v1/journeys/{journey['id']}/map")).json()
        assert doc["journey"]["version"] == 2
        assert (await api.delete(f"/v1/touchpoints/{tp['id']}")).status_code == 204
        created = await api.request("PUT", "/v1/customers/c1", json={})
        replaced = await api.request("PUT", "/v1/customers/c1", json={"profile": {"a": 1}})
        assert (created.json()["version"], replaced.json()["version"]) == (1, 2)

        events = await published_events(journey_app, servers.nats_url, api.workspace)
        versions = [(e["type"], e["version"]) for e in events if e["aggregate_id"] in (persona["id"], tp["id"])]
        assert versions == [
            ("journey.persona.created", 1), ("journey.touchpoint.created", 1), ("journey.persona.updated", 2),
            ("journey.persona.updated", 3), ("journey.touchpoint.updated", 2), ("journey.touchpoint.deleted", 3),
        ]  # fmt: skip
        upserted = [e for e in events if e["type"] == "journey.customer.upserted"]
        assert all(e["aggregate_id"] is None and e["version"] is None for e in upserted)  # batch events
        assert [(i["external_id"], i["version"]) for e in upserted for i in e["data"]["items"]] == [
            ("c1", 1),
            ("c1", 2),
        ]
