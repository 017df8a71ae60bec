"""Durable consumers: a redelivered event has one effect; failures retry with backoff, then park."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import nats
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from uuid_utils.compat import uuid7

from services.common.consumer import add_consumer, backoff_seconds, create_broker
from services.common.db import create_engine, create_sessionmaker, ensure_database
from services.common.events import Event, encode_event
from services.common.kit_tables import define_kit_tables
from services.common.outbox import ensure_streams
from tests.conftest import Servers, unique_name


@pytest.fixture(scope="module")
async def sessionmaker(servers: Servers) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    url = servers.database_url(unique_name("jg_consumer"))
    await ensure_database(url)
    engine = create_engine(url)
    metadata = sa.MetaData()
    define_kit_tables(metadata)
    sa.Table("probe", metadata, sa.Column("event_id", sa.Uuid), sa.Column("note", sa.Text))
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    nc = await nats.connect(servers.nats_url)
    await ensure_streams(nc.jetstream())  # as a service's lifespan does before its consumers start
    await nc.close()
    yield create_sessionmaker(engine)
    await engine.dispose()


async def publish(nats_url: str, subject: str, event_id: Any, *, msg_id: str | None = None) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    payload = encode_event(
        event_id=event_id, type=subject, workspace_id="ws", occurred_at=datetime.now(UTC), data={"n": 1}
    )
    await js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id or str(event_id)})
    await nc.close()


async def wait_for(predicate: Any, seconds: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def count(sm: async_sessionmaker[AsyncSession], sql: str, **params: Any) -> int:
    async with sm() as s:
        return int((await s.execute(sa.text(sql), params)).scalar_one())


class TestConsumer:
    async def test_redelivered_event_has_one_effect(
        self, servers: Servers, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        calls: list[str] = []

        async def handle(session: AsyncSession, event: Event[dict[str, Any]]) -> None:
            calls.append(str(event.id))
            await session.execute(sa.text("INSERT INTO probe VALUES (:e, 'once')"), {"e": event.id})

        name = unique_name("once")
        broker = create_broker(servers.nats_url)
        add_consumer(broker, name=name, subject=f"journey.probe.{name}", handler=handle, sessionmaker=sessionmaker)
        event_id = uuid7()
        await broker.start()
        try:
            # the same event twice (another Nats-Msg-Id, so the stream does not dedupe it for us)
            await publish(servers.nats_url, f"journey.probe.{name}", event_id)
            await publish(servers.nats_url, f"journey.probe.{name}", event_id, msg_id=f"{event_id}-again")
            await wait_for(lambda: _inbox_has(sessionmaker, name, event_id))
            await asyncio.sleep(1.0)  # time for the second copy to arrive and be skipped
        finally:
            await broker.stop()
        assert await count(sessionmaker, "SELECT count(*) FROM probe WHERE event_id = :e", e=event_id) == 1
        assert calls.count(str(event_id)) == 1

    async def test_failing_handler_is_retried_until_it_succeeds(
        self, servers: Servers, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        attempts = 0

        async def flaky(session: AsyncSession, event: Event[dict[str, Any]]) -> None:
            nonlocal attempts
            attempts += 1
            await session.execute(sa.text("INSERT INTO probe VALUES (:e, 'flaky')"), {"e": event.id})
            if attempts < 3:
                raise RuntimeError("downstream not ready")  # rolls back the insert above

        name = unique_name("flaky")
        broker = create_broker(servers.nats_url)
        add_consumer(broker, name=name, subject=f"journey.probe.{name}", handler=flaky, sessionmaker=sessionmaker)
        event_id = uuid7()
        await broker.start()
        try:
            await publish(servers.nats_url, f"journey.probe.{name}", event_id)
            await wait_for(lambda: _inbox_has(sessionmaker, name, event_id))
        finally:
            await broker.stop()
        assert attempts == 3
        assert await count(sessionmaker, "SELECT count(*) FROM probe WHERE event_id = :e", e=event_id) == 1

    async def test_poison_event_is_parked_after_max_attempts(
        self, servers: Servers, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        attempts = 0

        async def broken(session: AsyncSession, event: Event[dict[str, Any]]) -> None:
            nonlocal attempts
            attempts += 1
            raise ValueError("cannot handle this")

        name = unique_name("poison")
        broker = create_broker(servers.nats_url)
        add_consumer(
            broker,
            name=name,
            subject=f"journey.probe.{name}",
            handler=broken,
            sessionmaker=sessionmaker,
            max_attempts=3,
        )
        event_id = uuid7()
        await broker.start()
        try:
            await publish(servers.nats_url, f"journey.probe.{name}", event_id)

            async def parked() -> bool:
                return (
                    await count(sessionmaker, "SELECT count(*) FROM dead_letter WHERE event_id = :e", e=event_id) == 1
                )

            await wait_for(parked)
            await asyncio.sleep(1.5)  # acknowledged: no further delivery
        finally:
            await broker.stop()
        assert attempts == 3
        async with sessionmaker() as s:
            row = (
                await s.execute(
                    sa.text("SELECT consumer, attempts, error FROM dead_letter WHERE event_id = :e"), {"e": event_id}
                )
            ).one()
        assert (row.consumer, row.attempts) == (name, 3)
        assert "cannot handle this" in row.error

    def test_backoff_grows_exponentially_with_a_cap(self) -> None:
        assert [backoff_seconds(a) for a in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
        assert backoff_seconds(30) == 300.0


async def _inbox_has(sm: async_sessionmaker[AsyncSession], consumer: str, event_id: Any) -> bool:
    return (
        await count(
            sm, "SELECT count(*) FROM inbox_event WHERE consumer = :c AND event_id = :e", c=consumer, e=event_id
        )
        == 1
    )
