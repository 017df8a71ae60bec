from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson
from asgi_lifespan import LifespanManager
from standardwebhooks import Webhook

from services.common.db import ensure_database
from services.feedback.app import create_app
from tests.conftest import Keys, Servers, unique_name
from tests.feedback.conftest import make_settings
from tests.feedback.factories import FeedbackApi
from tests.feedback.receiver import Receiver, run_receiver
from tests.eventually import eventually


async def allow_loopback(api: FeedbackApi) -> None:
    response = await api.admin().put("/v1/settings", json={"allow_private_webhook_targets": True})
    assert response.status_code == 200, response.text


async def subscribe(api: FeedbackApi, receiver: Receiver, types: list[str] | None = None) -> dict[str, Any]:
    return await api.created(
        "/v1/webhooks", {"url": receiver.url, "event_types": types or ["feedback.response.submitted"]}
    )


class TestWebhooks:
    async def test_loopback_target_refused_without_setting(self, api: FeedbackApi) -> None:
        for url in ("http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://[::1]/hook", "http://localhost/x"):
            response = await api.post("/v1/webhooks", json={"url": url, "event_types": ["*"]})
            assert response.status_code == 422, url
            assert "private or loopback" in response.json()["detail"]

    async def test_unknown_event_type_is_422(self, api: FeedbackApi) -> None:
        await allow_loopback(api)
        response = await api.post("/v1/webhooks", json={"url": "http://127.0.0.1/x", "event_types": ["journey.x.y"]})
        assert response.status_code == 422

    async def test_delivery_verifies_with_library_verifier(self, api: FeedbackApi) -> None:
        await allow_loopback(api)
        async with run_receiver() as receiver:
            hook = await subscribe(api, receiver)
            survey = await api.survey()
            response = await api.respond(survey["id"], {"recommend": 3})
            await eventually(lambda: asyncio.sleep(0, receiver.delivered))
            got = receiver.delivered[0]
            event = Webhook(hook["secret"]).verify(got.body, got.headers)
            assert event["type"] == "feedback.response.submitted"
            assert event["data"]["id"] == response["id"]
            assert event["data"]["nps_category"] == "detractor"
            assert got.headers["webhook-id"] == event["id"]
            # a case.opened event exists too, but this subscription asked only for responses
            await asyncio.sleep(0.5)
            assert len(receiver.requests) == 1

    async def test_receiver_failing_twice_gets_event_exactly_once_more(self, api: FeedbackApi) -> None:
        await allow_loopback(api)
        async with run_receiver() as receiver:
            receiver.fail_next = 2
            hook = await subscribe(api, receiver)
            survey = await api.survey()
            await api.respond(survey["id"], {"recommend": 9})
            await eventually(lambda: asyncio.sleep(0, receiver.delivered))
            await asyncio.sleep(1.0)  # longer than the next backoff: nothing more may arrive
            assert [r.answered for r in receiver.requests] == [500, 500, 204]
            assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
            log = (await api.ok(f"/v1/webhooks/{hook['id']}/deliveries"))["items"]
            assert len(log) == 1
            assert (log[0]["status"], log[0]["attempts"]) == ("succeeded", 3)
            assert [a["status_code"] for a in log[0]["log"]] == [500, 500, 204]

            redelivered = await api.post(f"/v1/webhooks/{hook['id']}/deliveries/{log[0]['id']}/redeliver")
            assert redelivered.status_code == 202, redelivered.text
            await eventually(lambda: asyncio.sleep(0, len(receiver.delivered) == 2))
            assert receiver.delivered[1].body == receiver.delivered[0].body

    async def test_wildcards_and_tenant_isolation(self, api: FeedbackApi) -> None:
        await allow_loopback(api)
        async with run_receiver() as receiver:
            hook = await subscribe(api, receiver, ["feedback.case.*"])
            other = api.other()
            assert (await other.get(f"/v1/webhooks/{hook['id']}")).status_code == 404
            assert (await other.get(f"/v1/webhooks/{hook['id']}/deliveries")).status_code == 404
            other_survey = await other.survey()
            await other.respond(other_survey["id"], {"recommend": 0})  # another workspace's case
            survey = await api.survey()
            await api.respond(survey["id"], {"recommend": 0})
            await eventually(lambda: asyncio.sleep(0, receiver.delivered))
            await asyncio.sleep(0.5)
            events = [orjson.loads(r.body) for r in receiver.delivered]
            assert [(e["type"], e["workspace_id"]) for e in events] == [("feedback.case.opened", api.workspace)]


class TestRestart:
    async def test_nothing_lost_when_service_restarts_mid_retry(self, servers: Servers, keys: Keys) -> None:
        database = unique_name("jg_feedback_restart")
        await ensure_database(servers.database_url(database))
        settings = make_settings(servers, keys, database, webhook_backoff_base_seconds=1.5)
        workspace = unique_name("ws")
        async with run_receiver() as receiver:
            receiver.fail_next = 1
            first = create_app(settings)
            async with LifespanManager(first, startup_timeout=60, shutdown_timeout=60):
                import httpx

                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=first), base_url="http://f") as http:
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
