"""A NATS outage delays events and loses none: the service starts without the broker, takes writes
while it is stopped or gone, shows the outbox backlog that is not draining, and publishes every event
once (no service restart) when a new nats-server comes up on the same port and store.

Each test runs the journey service in this process against a nats-server of its own, which it stops
(SIGSTOP), kills and starts again: never the session's shared server."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import sqlalchemy as sa
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import create_async_engine

from services.common.db import ensure_database
from services.common.embedded import free_port, start_nats, stop_process
from services.journey.app import create_app
from services.journey.consumers import CONSUMERS
from services.journey.settings import JourneySettings
from tests.common.test_relay import stream_ids
from tests.conftest import Keys, Servers, unique_name
from tests.eventually import eventually
from tests.journey.factories import JourneyApi

PUBLISH_TIMEOUT = 2.0  # the relay's, in these tests


@dataclass
class Broker:
    """A nats-server of the test's own, on a fixed port and store, that can be stopped, killed and
    started again."""

    store: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = start_nats(self.store, self.port)

    def pause(self) -> None:  # the process hangs: its connections stay open and nothing answers
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.resume()
            stop_process(self.proc)
            self.proc = None


@pytest.fixture
def broker() -> Iterator[Broker]:
    with tempfile.TemporaryDirectory(prefix="jg-faults-") as tmp:
        b = Broker(Path(tmp))
        try:
            yield b
        finally:
            b.stop()


@dataclass
class Service:
    app: FastAPI
    http: httpx.AsyncClient
    api: JourneyApi


@pytest.fixture
async def settings(servers: Servers, keys: Keys, broker: Broker) -> JourneySettings:
    url = servers.database_url(unique_name("jg_faults"))
    await ensure_database(url)
    return JourneySettings(
        database_url=url,
        nats_url=broker.url,
        auth_public_key=keys.public,
        rate_limit="100000/minute",
        # Its own label on the process-wide metrics: the session's journey app, in this process too,
        # sets the "journey" backlog gauge to its own (empty) backlog every second.
        service_name="journey-faults",
        outbox_poll_seconds=0.2,
        outbox_stall_seconds=2,
        outbox_publish_timeout_seconds=PUBLISH_TIMEOUT,
        consumer_ack_wait_seconds=3,  # an ack the hung server never got: redelivered soon
        worker_poll_seconds=0.2,
        log_json=False,
        log_level="WARNING",
    )


@asynccontextmanager
async def running(settings: JourneySettings, keys: Keys) -> AsyncIterator[Service]:
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=20, shutdown_timeout=20):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://journey") as http:
            yield Service(app, http, JourneyApi(http, keys, unique_name("ws")))


async def write(service: Service, n: int) -> None:
    for _ in range(n):
        await service.api.touchpoint(unique_name("tp"))  # asserts 201


async def write_large(service: Service, n: int) -> None:
    """n customers with a ~14 KB profile each, 500 a request."""
    profile = {"notes": "x" * 14_000}
    for start in range(0, n, 500):
        items = [{"external_id": unique_name("c"), "profile": profile} for _ in range(start, min(n, start + 500))]
        response = await service.api.post("/v1/customers/bulk", json={"items": items})
        assert response.status_code == 200, response.text
        assert response.json()["counts"]["failed"] == 0


async def longest_open_transaction(settings: JourneySettings, *, seconds: float) -> float:
    """The longest any transaction of the service's database stayed open while sampled for `seconds`."""
    engine = create_async_engine(settings.database_url)
    longest = 0.0
    try:
        # autocommit: a transaction sees pg_stat_activity as it was when it first read it
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            for _ in range(int(seconds / 0.25)):
                age = await conn.scalar(
                    sa.text(
                        "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)), 0) "
                        "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
                        "AND state LIKE 'idle in transaction%'"
                    )
                )
                longest = max(longest, float(age))
                await asyncio.sleep(0.25)
    finally:
        await engine.dispose()
    return longest


async def outbox(settings: JourneySettings) -> tuple[list[str], int]:
    """Every outbox row's id, and how many are not published yet."""
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT id, published_at FROM outbox_event"))).all()
    finally:
        await engine.dispose()
    return [str(r.id) for r in rows], sum(r.published_at is None for r in rows)


async def all_published(settings: JourneySettings) -> bool:
    ids, pending = await outbox(settings)
    return bool(ids) and pending == 0


async def consumers_caught_up(url: str) -> bool:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for c in CONSUMERS:
            info = await js.consumer_info("JOURNEY", c.name, timeout=2)
            if info.num_pending or info.num_ack_pending:
                return False
        return True
    finally:
        await nc.close()


def metric(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


class TestBrokerOutage:
    async def test_every_event_is_published_once_after_the_broker_hung_and_was_replaced(
        self, broker: Broker, settings: JourneySettings, keys: Keys
    ) -> None:
        broker.start()
        async with running(settings, keys) as service:
            await write(service, 3)
            await eventually(lambda: all_published(settings), within=10)
            broker.pause()  # hangs: its connections stay open, it reads and acknowledges nothing
            await write(service, 2)
            await write_large(service, 1500)  # ~20 MB of events: more than the socket buffers hold
            # The relay holds a batch's row locks only for the publish timeout, then rolls back.
            held = await longest_open_transaction(settings, seconds=7)
            broker.kill()  # the hung server dies; writes go on meanwhile
            await write(service, 3)
            await asyncio.sleep(1)
            broker.start()  # a new server on the same port and store
            await eventually(lambda: all_published(settings), within=15)
            await eventually(lambda: consumers_caught_up(broker.url), within=20)
            ids, _ = await outbox(settings)
            nc = await nats.connect(broker.url)
            try:
                in_stream = await stream_ids(nc, "JOURNEY", service.api.workspace)
            finally:
                await nc.close()
        assert sorted(in_stream) == sorted(ids)  # each event once in the stream (Nats-Msg-Id dedupe)
        # While the server hung, the relay held a batch's row locks no longer than the publish timeout.
        assert held < PUBLISH_TIMEOUT + 2.5

    async def test_a_hung_broker_shows_as_an_outbox_backlog_that_is_not_draining(
        self, broker: Broker, settings: JourneySettings, keys: Keys
    ) -> None:
        broker.start()
        async with running(settings, keys) as service:
            await write(service, 1)
            await eventually(lambda: all_published(settings), within=10)
            ready = (await service.http.get("/readyz")).json()
            assert ready["checks"]["outbox"] == "ok"
            broker.pause()
            await write(service, 1)

            async def stalled() -> dict[str, Any] | None:
                body: dict[str, Any] = (await service.http.get("/readyz")).json()
                return body if body["checks"]["outbox"] != "ok" else None

            body = await eventually(stalled, within=15)
            assert body["checks"]["outbox"].startswith("not draining")

            async def backlog_age() -> float | None:
                text = (await service.http.get("/metrics")).text
                age = metric(text, "journeygraph_outbox_oldest_pending_seconds", service=settings.service_name)
                return age if age is not None and age >= settings.outbox_stall_seconds else None

            await eventually(backlog_age, within=5)  # the gauge is measured every second
            broker.resume()
            await eventually(lambda: all_published(settings), within=20)

            async def drained() -> bool:
                return bool((await service.http.get("/readyz")).json()["checks"]["outbox"] == "ok")

            await eventually(drained, within=10)

    async def test_a_service_started_while_the_broker_is_down_takes_writes_and_publishes_them_later(
        self, broker: Broker, settings: JourneySettings, keys: Keys
    ) -> None:
        async with running(settings, keys) as service:  # nothing listens on the broker's port
            await write(service, 2)  # 201: the outbox keeps the events
            ready = await service.http.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["checks"]["broker"] != "ok"
            broker.start()
            await eventually(lambda: all_published(settings), within=15)
            ids, _ = await outbox(settings)
            nc = await nats.connect(broker.url)
            try:
                assert sorted(await stream_ids(nc, "JOURNEY", service.api.workspace)) == sorted(ids)
            finally:
                await nc.close()
            await eventually(lambda: consumers_caught_up(broker.url), within=15)
            assert (await service.http.get("/readyz")).json()["checks"]["broker"] == "ok"
