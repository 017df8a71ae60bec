"""How the delivery worker sends: one receiver cannot hold up another's deliveries or retries, every
attempt is in the log, a disabled subscription gets nothing, and stopping the service lets the
attempts in flight finish (an answered delivery is not sent again after a restart).

Each test runs its own copy of the service (its own database and NATS server, settings of its own:
an attempt times out after 5 s, retries come 1, 2, 4 s after a failure) and stops and starts it
as a deployment would.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from asgi_lifespan import LifespanManager
from sqlalchemy.ext.asyncio import create_async_engine

from services.common.db import ensure_database
from services.feedback.app import create_app
from services.feedback.delivery import DeliveryWorker
from services.feedback.settings import FeedbackSettings
from tests.conftest import Keys, Servers, unique_name
from tests.eventually import eventually
from tests.feedback.factories import FeedbackApi
from tests.feedback.fixtures import make_settings
from tests.feedback.receiver import Receiver, run_receiver
from tests.feedback.test_webhooks import allow_loopback, deliveries, settled, subscribe

TIMEOUT = 5.0
BACKOFF = 1.0


@pytest.fixture(scope="module")
async def settings(servers: Servers, keys: Keys, own_nats: str) -> FeedbackSettings:
    database = unique_name("jg_feedback_delivery")
    await ensure_database(servers.database_url(database))
    return make_settings(
        servers,
        keys,
        database,
        nats_url=own_nats,
        webhook_timeout_seconds=TIMEOUT,
        webhook_backoff_base_seconds=BACKOFF,
        webhook_subscription_concurrency=4,
    )


@contextlib.asynccontextmanager
async def service(
    settings: FeedbackSettings, keys: Keys, workspace: str, *, more_workers: int = 0
) -> AsyncIterator[FeedbackApi]:
    """The service running; `more_workers` delivery workers beside its own stand for other replicas."""
    app = create_app(settings)
    async with (
        LifespanManager(app, startup_timeout=60, shutdown_timeout=60),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://f") as http,
    ):
        workers = [DeliveryWorker(app.state.engine, settings) for _ in range(more_workers)]
        for worker in workers:
            worker.start()
        try:
            yield FeedbackApi(http, keys, workspace)
        finally:
            for worker in workers:
                await worker.stop()


async def logged_attempts(settings: FeedbackSettings, hook: dict[str, Any]) -> int:
    """The attempts in the subscription's delivery log, read from the database (the service may be stopped)."""
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(
                sa.text(
                    "SELECT coalesce(sum(jsonb_array_length(log)), 0) FROM webhook_delivery WHERE subscription_id = :s"
                ),
                {"s": hook["id"]},
            )
            return int(found.scalar_one())
    finally:
        await engine.dispose()


async def respond(api: FeedbackApi, survey: dict[str, Any], n: int) -> None:
    await asyncio.gather(*(api.respond(survey["id"], {"recommend": 9}) for _ in range(n)))


async def arrived(receiver: Receiver, n: int) -> list[float]:
    """When the receiver's first `n` requests arrived, once it has had them."""

    async def had() -> list[float] | None:
        return [r.at for r in receiver.requests[:n]] if len(receiver.requests) >= n else None

    return await eventually(had, within=30)


class TestSlowReceiver:
    async def test_a_slow_receiver_does_not_hold_up_another_subscription(
        self, settings: FeedbackSettings, keys: Keys, workspace: str
    ) -> None:
        async with run_receiver() as slow, run_receiver() as fast:
            slow.delay = 60.0  # never answers within the timeout
            async with service(settings, keys, workspace) as api:
                await allow_loopback(api)
                slow_hook, fast_hook = await subscribe(api, slow), await subscribe(api, fast)
                survey = await api.survey()
                await respond(api, survey, 30)
                fast_times = await arrived(fast, 30)
                first = min([*fast_times, *(r.at for r in slow.requests)])
                # The slow receiver's attempts wait for their timeout; the fast one's do not wait for them.
                assert max(fast_times) - first < TIMEOUT - 1.0, [round(t - first, 2) for t in fast_times]
                assert len(slow.requests) <= settings.webhook_subscription_concurrency

                async def all_succeeded() -> bool:  # a delivery is marked after its answer, a moment after arrival
                    return all(d["status"] == "succeeded" for d in await deliveries(api, fast_hook))

                await eventually(all_succeeded, within=10)
            # Stopped: the attempts in flight ended (timed out) and are in the log, every one.
            assert await logged_attempts(settings, slow_hook) == len(slow.requests) > 0
            assert await logged_attempts(settings, fast_hook) == len(fast.requests) == 30


class TestReplicas:
    async def test_replicas_share_the_deliveries_and_send_each_once(
        self, settings: FeedbackSettings, keys: Keys, workspace: str
    ) -> None:
        async with run_receiver() as receiver, service(settings, keys, workspace, more_workers=2) as api:
            await allow_loopback(api)
            hook = await subscribe(api, receiver)
            survey = await api.survey()
            await respond(api, survey, 40)  # one page of the log
            log = await settled(api, hook, 40)
            assert {d["attempts"] for d in log} == {1}
            ids = [r.headers["webhook-id"] for r in receiver.requests]
            assert len(ids) == len(set(ids)) == 40


class TestRetries:
    async def test_retries_keep_their_schedule_while_another_receiver_is_stuck(
        self, settings: FeedbackSettings, keys: Keys, workspace: str
    ) -> None:
        async with run_receiver() as slow, run_receiver() as flaky:
            slow.delay, flaky.fail_next = 60.0, 3
            async with service(settings, keys, workspace) as api:
                await allow_loopback(api)
                await subscribe(api, slow)
                survey = await api.survey()
                await respond(api, survey, 20)  # a backlog of attempts that time out, and their retries
                await arrived(slow, 1)
                hook = await subscribe(api, flaky)
                await respond(api, survey, 1)
                times = await arrived(flaky, 4)
                gaps = [b - a for a, b in itertools.pairwise(times)]
                for gap, planned in zip(gaps, (BACKOFF, 2 * BACKOFF, 4 * BACKOFF), strict=True):
                    assert planned - 0.1 <= gap < planned + 1.5, [round(g, 2) for g in gaps]
                (log,) = await settled(api, hook, 1)
                assert (log["status"], log["attempts"]) == ("succeeded", 4)
                assert [a["status_code"] for a in log["log"]] == [500, 500, 500, 204]


class TestDisabled:
    async def test_a_disabled_subscription_gets_nothing_until_enabled_again(
        self, settings: FeedbackSettings, keys: Keys, workspace: str
    ) -> None:
        async with run_receiver() as receiver, run_receiver() as marker, service(settings, keys, workspace) as api:
            receiver.fail_next = 1
            await allow_loopback(api)
            hook = await subscribe(api, receiver)
            survey = await api.survey()
            await respond(api, survey, 1)

            async def failed_once() -> dict[str, Any] | None:
                found = await deliveries(api, hook)
                return found[0] if found and found[0]["attempts"] == 1 else None

            pending = await eventually(failed_once)
            changed = await api.admin().patch(f"/v1/webhooks/{hook['id']}", json={"enabled": False})
            assert changed.status_code == 200, changed.text
            # The retry is due in a second. Proof that the worker has looked for due deliveries since:
            # a delivery of another subscription, scheduled after that, has been sent.
            await asyncio.sleep(BACKOFF + 0.5)
            await subscribe(api, marker)
            await respond(api, survey, 1)
            await arrived(marker, 1)
            assert len(receiver.requests) == 1
            (still,) = await deliveries(api, hook)
            assert (still["id"], still["status"], still["attempts"]) == (pending["id"], "pending", 1)

            assert (await api.admin().patch(f"/v1/webhooks/{hook['id']}", json={"enabled": True})).status_code == 200
            (log,) = await settled(api, hook, 1)
            assert (log["status"], log["attempts"], len(receiver.requests)) == ("succeeded", 2, 2)


class TestShutdown:
    async def test_an_attempt_in_flight_finishes_and_is_not_sent_again_after_a_restart(
        self, settings: FeedbackSettings, keys: Keys, workspace: str
    ) -> None:
        async with run_receiver() as receiver:
            receiver.delay = 2.0  # answers 204, slowly, but within the timeout
            async with service(settings, keys, workspace) as api:
                await allow_loopback(api)
                hook = await subscribe(api, receiver)
                survey = await api.survey()
                await respond(api, survey, 1)
                await arrived(receiver, 1)
            # stopped while the receiver was still answering
            assert await logged_attempts(settings, hook) == 1
            receiver.delay = 0.0
            async with service(settings, keys, workspace) as api:
                (log,) = await deliveries(api, hook)
                assert (log["status"], log["attempts"]) == ("succeeded", 1)
                # Proof that the restarted worker has looked for due deliveries: a later one arrives.
                await respond(api, survey, 1)
                await settled(api, hook, 2)
            ids = [r.headers["webhook-id"] for r in receiver.requests]
            assert len(ids) == len(set(ids)) == 2
