"""The outbox: events leave only with their transaction, a relay crash never doubles them, and a
workspace's admin lists and replays its parked events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

import httpx
import pytest
import sqlalchemy as sa
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, FastAPI
from uuid_utils.compat import uuid7

from services.common.auth import Caller, caller_with
from services.common.db import SessionDep
from services.common.events import encode_event
from services.common.ids import new_ids
from services.common.outbox import emit
from services.common.service import create_service_app
from services.journey.app import SERVICE_DIR
from services.journey.settings import JourneySettings
from tests.conftest import Keys, Servers, unique_name
from tests.events import published_events
from tests.journey.factories import JourneyApi

probe = APIRouter()


@probe.post("/probe/commit-fails/{journey_id}")
async def write_then_fail_at_commit(
    caller: Annotated[Caller, caller_with("admin")], session: SessionDep, journey_id: str
) -> dict[str, str]:
    """Emits an event, then writes two stages at one position: the deferred unique constraint
    fails only at COMMIT, after this handler has returned."""
    await emit(
        session,
        workspace_id=caller.workspace_id,
        type="journey.probe.emitted",
        data={"n": 1},
        aggregate_id=None,
        version=None,
    )
    for key in ("x1", "x2"):
        await session.execute(
            sa.text(
                "INSERT INTO stage (id, workspace_id, journey_id, key, name, position) VALUES (:id, :w, :j, :k, :k, 99)"
            ),
            {"id": uuid7(), "w": caller.workspace_id, "j": journey_id, "k": key},
        )
    return {"status": "should never be seen"}


@pytest.fixture(scope="module")
async def probe_app(journey_settings: JourneySettings, journey_app: FastAPI) -> AsyncIterator[FastAPI]:
    # journey_app has migrated the database; this app shares it (its consumers: none)
    settings = journey_settings.model_copy(update={"migrate_on_start": False})
    app = create_service_app(
        title="probe",
        description="kit probe",
        settings=settings,
        service_dir=SERVICE_DIR,
        routers=[probe],
        published_events={},
    )
    async with LifespanManager(app):
        yield app


class TestOutbox:
    async def test_failed_commit_is_an_error_and_publishes_nothing(
        self, probe_app: FastAPI, api: JourneyApi, keys: Keys, servers: Servers
    ) -> None:
        journey = await api.journey()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=probe_app), base_url="http://p") as client:
            response = await client.post(
                f"/probe/commit-fails/{journey['id']}", headers=keys.headers(api.workspace, ["admin"])
            )
        assert response.status_code == 409, response.text  # not the handler's 200
        assert "conflicts with another change" in response.json()["detail"]
        assert "uq_stage_position" not in response.text  # a database internal: logged, not answered
        events = await published_events(probe_app, servers.nats_url, api.workspace)
        assert [e["type"] for e in events] == ["journey.journey.created"]
        async with probe_app.state.engine.connect() as conn:
            rows = await conn.scalar(
                sa.text("SELECT count(*) FROM outbox_event WHERE workspace_id = :w"), {"w": api.workspace}
            )
        assert rows == 1

    async def test_relay_crash_between_publish_and_mark_does_not_publish_twice(
        self, journey_app: FastAPI, api: JourneyApi, servers: Servers
    ) -> None:
        await api.touchpoint()
        relay, engine = journey_app.state.relay, journey_app.state.engine
        await relay.drain()
        # Simulate a relay that published but died before marking: the rows are pending again.
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE outbox_event SET published_at = NULL WHERE workspace_id = :w"), {"w": api.workspace}
            )
        assert await relay.drain() >= 1
        events = await published_events(journey_app, servers.nats_url, api.workspace)
        assert [e["type"] for e in events] == ["journey.touchpoint.created"]


class TestDeadLetterAdmin:
    async def test_admin_lists_and_replays_the_workspaces_parked_events_only(
        self, probe_app: FastAPI, keys: Keys, servers: Servers
    ) -> None:
        workspace, other = unique_name("ws"), unique_name("ws")
        event_id, payload = new_ids(1)[0], b""
        payload = encode_event(
            event_id=event_id, type="journey.probe.parked", workspace_id=workspace, occurred_at=datetime.now(UTC),
            data={"n": 1},
        )  # fmt: skip
        async with probe_app.state.engine.begin() as conn:  # as the relay leaves a row it gave up on
            await conn.execute(
                sa.text(
                    "INSERT INTO dead_letter (id, consumer, workspace_id, event_id, subject, payload, error, attempts) "
                    "VALUES (:id, 'outbox-relay', :w, :e, 'journey.probe.parked', :p, 'MaxPayloadError()', 5)"
                ),
                {"id": new_ids(1)[0], "w": workspace, "e": event_id, "p": payload},
            )
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=probe_app), base_url="http://p") as client:
            admin = keys.headers(workspace, ["admin"])
            listed = (await client.get("/v1/admin/dead-letters", headers=admin)).json()
            (dead,) = listed["items"]
            assert (dead["event_id"], dead["consumer"], dead["event"]["type"]) == (
                event_id, "outbox-relay", "journey.probe.parked"
            )  # fmt: skip
            others = await client.get("/v1/admin/dead-letters", headers=keys.headers(other, ["admin"]))
            assert others.json()["items"] == []
            reader = keys.headers(workspace, ["journeys:read"])
            assert (await client.get("/v1/admin/dead-letters", headers=reader)).status_code == 403
            url = f"/v1/admin/dead-letters/{dead['id']}/replay"
            foreign = await client.post(url, headers={**keys.headers(other, ["admin"]), "Idempotency-Key": "r0"})
            assert foreign.status_code == 404
            replayed = await client.post(url, headers={**admin, "Idempotency-Key": "r1"})
            assert replayed.status_code == 200, replayed.text
            assert replayed.json()["replayed_to"] == "outbox"
            again = await client.post(url, headers={**admin, "Idempotency-Key": "r1"})
            assert again.headers["idempotent-replayed"] == "true"
            assert (await client.post(url, headers={**admin, "Idempotency-Key": "r2"})).status_code == 404
            assert (await client.get("/v1/admin/dead-letters", headers=admin)).json()["items"] == []
        events = await published_events(probe_app, servers.nats_url, workspace)
        assert [e["id"] for e in events] == [event_id]
