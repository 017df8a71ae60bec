"""Webhook deliveries: a projection of the events (one delivery per subscription and event, with the
event's id as `webhook-id`), sent signed by the delivery worker with retries.

A test that asserts that something was NOT delivered first waits for the proof that the path which
would have delivered it ran: the webhooks projection has applied the event (its inbox holds it), or a
delivery's row is final (only pending rows are ever sent).
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx
import orjson
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from standardwebhooks import Webhook

from services.common.db import ensure_database
from services.common.events import decode_event
from services.feedback.app import create_app
from services.feedback.consumers import PROJECTIONS
from tests.conftest import Keys, Servers, unique_name
from tests.eventually import eventually
from tests.feedback.db import applied, event_ids, execute, rows
from tests.feedback.factories import FeedbackApi
from tests.feedback.fixtures import make_settings
from tests.feedback.receiver import Receiver, run_receiver


async def allow_loopback(api: FeedbackApi) -> None:
    response = await api.admin().put("/v1/settings", json={"allow_private_webhook_targets": True})
    assert response.status_code == 200, response.text


async def subscribe(api: FeedbackApi, receiver: Receiver, types: list[str] | None = None) -> dict[str, Any]:
    return await api.admin().created(
        "/v1/webhooks", {"url": receiver.url, "event_types": types or ["feedback.response.submitted"]}
    )


async def deliveries(api: FeedbackApi, hook: dict[str, Any]) -> list[dict[str, Any]]:
    return (await api.ok(f"/v1/webhooks/{hook['id']}/deliveries"))["items"]  # type: ignore[no-any-return]


async def settled(api: FeedbackApi, hook: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """The subscription's `n` deliveries once none is pending any more: nothing of them is sent again."""

    async def final() -> list[dict[str, Any]] | None:
        log = await deliveries(api, hook)
        return log if len(log) == n and all(d["status"] != "pending" for d in log) else None

    return await eventually(final)


async def applied_all(app: FastAPI, workspace: str, subject: str) -> list[str]:
    """The ids of the workspace's events of `subject`, once the webhooks projection has applied them all."""

    async def done() -> list[str] | None:
        ids = await event_ids(app, workspace, subject)
        return ids if ids and all([await applied(app, PROJECTIONS, i) for i in ids]) else None

    return await eventually(done)


class TestWebhooks:
    async def test_loopback_target_refused_without_setting(self, api: FeedbackApi) -> None:
        for url in ("http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://[::1]/hook", "http://localhost/x"):
            response = await api.admin().post("/v1/webhooks", json={"url": url, "event_types": ["*"]})
            assert response.status_code == 422, url
            assert "private or loopback" in response.json()["detail"]

    async def test_unknown_event_type_is_422(self, api: FeedbackApi) -> None:
        await allow_loopback(api)
        response = await api.admin().post(
            "/v1/webhooks", json={"url": "http://127.0.0.1/x", "event_types": ["journey.x.y"]}
        )
        assert response.status_code == 422

    async def test_delivery_is_the_event_signed_with_its_id_as_webhook_id(
        self, api: FeedbackApi, feedback_app: FastAPI
    ) -> None:
        await allow_loopback(api)
        async with run_receiver() as receiver:
            hook = await subscribe(api, receiver)
            survey = await api.survey()
            response = await api.respond(survey["id"], {"recommend": 3})  # a detractor: a case is opened too
            (log,) = await settled(api, hook, 1)
            got = receiver.delivered[0]
            event = Webhook(hook["secret"]).verify(got.body, got.headers)
            assert event["type"] == "feedback.response.submitted"
            assert (event["aggregate_id"], event["version"]) == (response["id"], 1)
            assert event["data"]["nps_category"] == "detractor"
            (event_id,) = await event_ids(feedback_app, api.workspace, "feedback.response.submitted")
            assert got.headers["webhook-id"] == event["id"] == log["event_id"] == event_id
            # the case's event was applied too, and this subscription asked only for responses
            await applied_all(feedback_app, api.workspace, "feedback.case.opened")
            assert len(await deliveries(api, hook)) == 1
            assert len(receiver.requests) == 1

    async def test_receiver_failing_twice_gets_event_exactly_once_more(self, api: FeedbackApi) -> None:
        await allow_loopback(api)
        async with run_receiver() as receiver:
            receiver.fail_next = 2
            hook = await subscribe(api, receiver)
            survey = await api.survey()
            await api.respond(survey["id"], {"recommend": 9})
            (log,) = await settled(api, hook, 1)  # succeeded: it is never picked up again
            assert (log["status"], log["attempts"], log["next_attempt_at"]) == ("succeeded", 3, None)
            assert [a["status_code"] for a in log["log"]] == [500, 500, 204]
            assert [r.answered for r in receiver.requests] == [500, 500, 204]
            assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1

            redelivered = await api.post(f"/v1/webhooks/{hook['id']}/deliveries/{log['id']}/redeliver")
            assert redelivered.status_code == 202, redelivered.text
            await eventually(lambda: asyncio.sleep(0, len(receiver.delivered) == 2))
            assert receiver.delivered[1].body == receiver.delivered[0].body

    async def test_an_event_applied_again_is_not_delivered_again(self, api: FeedbackApi, feedback_app: FastAPI) -> None:
        await allow_loopback(api)
        async with run_receiver() as receiver:
            hook = await subscribe(api, receiver)
            survey = await api.survey()
            first = await api.respond(survey["id"], {"recommend": 9})
            await settled(api, hook, 1)
            # As if JetStream delivered it again after the inbox forgot it: the projection itself
            # keeps one delivery per subscription and event.
            (event_id,) = await event_ids(feedback_app, api.workspace, "feedback.response.submitted")
            ((payload,),) = await rows(feedback_app, "SELECT payload FROM outbox_event WHERE id = :e", e=event_id)
            await execute(
                feedback_app, "DELETE FROM inbox_event WHERE consumer = :c AND event_id = :e", c=PROJECTIONS, e=event_id
            )
            assert await feedback_app.state.runners[PROJECTIONS].apply_now([decode_event(payload)]) == 1
            # a later event is delivered: had the first been scheduled again, it would have gone before
            marker = await api.respond(survey["id"], {"recommend": 10})
            await settled(api, hook, 2)
            assert [orjson.loads(r.body)["data"]["id"] for r in receiver.requests] == [first["id"], marker["id"]]

    async def test_a_subscription_gets_the_events_that_occurred_after_it_was_created(
        self, api: FeedbackApi, feedback_app: FastAPI
    ) -> None:
        await allow_loopback(api)
        survey = await api.survey()
        await api.respond(survey["id"], {"recommend": 9})
        hook = await api.admin().created(
            "/v1/webhooks", {"url": "http://127.0.0.1:9/unused", "event_types": ["feedback.response.submitted"]}
        )
        later = await api.respond(survey["id"], {"recommend": 9})
        _, second = await applied_all(feedback_app, api.workspace, "feedback.response.submitted")
        assert [d["event_id"] for d in await deliveries(api, hook)] == [second]
        stored = await rows(feedback_app, "SELECT payload FROM webhook_delivery WHERE event_id = :e", e=second)
        assert orjson.loads(stored[0][0])["data"]["id"] == later["id"]

    async def test_wildcards_and_tenant_isolation(self, api: FeedbackApi, feedback_app: FastAPI) -> None:
        await allow_loopback(api)
        async with run_receiver() as receiver:
            hook = await subscribe(api, receiver, ["feedback.case.*"])
            other = api.other()
            assert (await other.get(f"/v1/webhooks/{hook['id']}")).status_code == 404
            assert (await other.get(f"/v1/webhooks/{hook['id']}/deliveries")).status_code == 404
            other_survey = await other.survey()
            await other.respond(other_survey["id"], {"recommend": 0})  # another workspace's case
            await applied_all(feedback_app, other.workspace, "feedback.case.opened")
            survey = await api.survey()
            await api.respond(survey["id"], {"recommend": 0})
            await settled(api, hook, 1)
            events = [orjson.loads(r.body) for r in receiver.requests]
            assert [(e["type"], e["workspace_id"]) for e in events] == [("feedback.case.opened", api.workspace)]


class TestRestart:
    async def test_nothing_lost_when_service_restarts_mid_retry(
        self, servers: Servers, keys: Keys, own_nats: str
    ) -> None:
        database = unique_name("jg_feedback_restart")
        await ensure_database(servers.database_url(database))
        settings = make_settings(servers, keys, database, nats_url=own_nats, webhook_backoff_base_seconds=1.5)
        workspace = unique_name("ws")
        async with run_receiver() as receiver:
            receiver.fail_next = 1
            first = create_app(settings)
            transport = httpx.ASGITransport(app=first)
            async with (
                LifespanManager(first, startup_timeout=60, shutdown_timeout=60),
                httpx.AsyncClient(transport=transport, base_url="http://f") as http,
            ):
                api = FeedbackApi(http, keys, workspace)
                await allow_loopback(api)
                hook = await subscribe(api, receiver)
                survey = await api.survey()
                await api.respond(survey["id"], {"recommend": 10})
                await eventually(lambda: asyncio.sleep(0, receiver.requests))
            assert [r.answered for r in receiver.requests] == [500]  # stopped before the retry was due
            second = create_app(settings)
            async with LifespanManager(second, startup_timeout=60, shutdown_timeout=60):
                await eventually(lambda: asyncio.sleep(0, receiver.delivered))
            assert [r.answered for r in receiver.requests] == [500, 204]
            Webhook(hook["secret"]).verify(receiver.delivered[0].body, receiver.delivered[0].headers)


class TestPolicy:
    def test_default_backoff_spans_hours(self) -> None:
        from services.feedback.delivery import backoff
        from services.feedback.settings import FeedbackSettings

        settings = FeedbackSettings(database_url="postgresql+asyncpg://x/y", nats_url="nats://x", auth_public_key="k")
        waits = [backoff(attempt, settings) for attempt in range(1, settings.webhook_max_attempts)]
        assert waits[:3] == [5.0, 10.0, 20.0]
        assert all(b >= a for a, b in itertools.pairwise(waits))
        assert sum(waits) > 2 * 3600  # the last attempt comes hours after the first

    async def test_public_address_is_allowed_private_ones_are_not(self) -> None:
        from services.feedback.store.webhooks import target_problem

        assert await target_problem("https://93.184.215.14/hook", allow_private=False) is None
        for url in ("http://169.254.169.254/latest", "http://192.168.0.10/", "http://0.0.0.0/"):
            assert await target_problem(url, allow_private=False) is not None, url
        assert await target_problem("http://127.0.0.1:8080/", allow_private=True) is None
        assert await target_problem("ftp://example.org/", allow_private=True) is not None
