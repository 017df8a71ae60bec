"""Durable consumers: batches in one transaction, a redelivered event has one effect, failures retry
with backoff then park, long batches are kept alive, a replay rebuilds from the start, and a dead
letter can be applied again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats
import orjson
import pytest
import sqlalchemy as sa
from nats.aio.client import Client as NATS
from nats.js.api import ConsumerConfig
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from uuid_utils.compat import uuid7

from services.common.consumer import Consumer, Runner, as_of, backoff_seconds
from services.common.db import create_engine, create_sessionmaker, ensure_database
from services.common.dead_letters import list_dead_letters, replay_dead_letter
from services.common.events import Event, encode_event
from services.common.kit_tables import define_kit_tables
from services.common.outbox import ensure_streams
from services.common.pull import PullLoop, pull_loops
from services.common.settings import ServiceSettings
from tests.conftest import Servers, unique_name
from tests.eventually import eventually

Events = list[Event[dict[str, Any]]]


class Calls(list[list[str]]):
    """The event ids of each call of a probe consumer's apply."""


@pytest.fixture(scope="module")
def nats_url(own_nats: str) -> str:
    """A server of this module's own: its streams hold only what these tests publish."""
    return own_nats


@pytest.fixture(scope="module")
async def sessionmaker(servers: Servers, nats_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    url = servers.database_url(unique_name("jg_consumer"))
    await ensure_database(url)
    engine = create_engine(url)
    metadata = sa.MetaData()
    define_kit_tables(metadata)
    sa.Table("probe", metadata, sa.Column("event_id", sa.Uuid), sa.Column("note", sa.Text))
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    nc = await nats.connect(nats_url)
    await ensure_streams(nc)  # as a service's lifespan does before its consumers start
    await nc.close()
    yield create_sessionmaker(engine)
    await engine.dispose()


async def publish(
    nats_url: str, subject: str, event_id: Any, *, msg_id: str | None = None, workspace: str = "ws"
) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    payload = encode_event(
        event_id=event_id, type=subject, workspace_id=workspace, occurred_at=datetime.now(UTC), data={"n": 1}
    )
    await js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id or str(event_id)})
    await nc.close()


async def count(sm: async_sessionmaker[AsyncSession], sql: str, **params: Any) -> int:
    async with sm() as s:
        return int((await s.execute(sa.text(sql), params)).scalar_one())


@dataclass
class Running:
    nc: NATS
    loops: list[PullLoop]

    @property
    def runners(self) -> dict[str, Runner]:
        return {loop.runner.name: loop.runner for loop in self.loops}

    async def stop(self) -> None:
        for loop in self.loops:
            await loop.stop()
        await self.nc.close()


async def start(nats_url: str, sm: async_sessionmaker[AsyncSession], *consumers: Consumer, **options: Any) -> Running:
    """The consumers as a service runs them: a pull loop each, on one connection."""
    nc = await nats.connect(nats_url)
    loops = pull_loops(consumers, **options)
    for loop in loops:
        loop.runner.bind(sm)
        loop.start(nc)
    return Running(nc, loops)


def probe_consumer(name: str, calls: list[Any], *, fail: Any = None, delay: float = 0.0) -> Consumer:
    async def apply(session: AsyncSession, events: Events) -> None:
        calls.append([str(e.id) for e in events])
        if delay:
            await asyncio.sleep(delay)
        for e in events:
            if fail is not None and fail(e):
                raise RuntimeError(f"cannot handle {e.id}")
            await session.execute(sa.text("INSERT INTO probe VALUES (:e, :n)"), {"e": e.id, "n": name})

    # Each test's consumer applies its own subject only; the module's stream holds every test's.
    return Consumer(name=name, stream="journey", apply=apply, types=frozenset({subject(name)}))


def subject(name: str) -> str:
    return f"journey.{name}.happened"


class TestConsumer:
    async def test_redelivered_event_has_one_effect(
        self, nats_url: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        name, calls = unique_name("once"), Calls()
        running = await start(nats_url, sessionmaker, probe_consumer(name, calls))
        event_id, marker = uuid7(), uuid7()
        try:
            # the same event twice (another Nats-Msg-Id, so the stream does not dedupe it for us),
            # then a marker: once the marker is applied, the copy before it was handled too
            await publish(nats_url, subject(name), event_id)
            await publish(nats_url, subject(name), event_id, msg_id=f"{event_id}-again")
            await publish(nats_url, subject(name), marker)
            await eventually(lambda: _applied(sessionmaker, marker))
        finally:
            await running.stop()
        assert await count(sessionmaker, "SELECT count(*) FROM probe WHERE event_id = :e", e=event_id) == 1
        assert sum(ids.count(str(event_id)) for ids in calls) == 1

    async def test_events_of_a_fetch_are_applied_in_one_transaction(
        self, nats_url: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        name, calls = unique_name("batch"), Calls()
        ids = [uuid7() for _ in range(20)]
        for event_id in ids:  # published before the consumer starts: one fetch finds them all
            await publish(nats_url, subject(name), event_id)
        running = await start(nats_url, sessionmaker, probe_consumer(name, calls), batch_size=50)
        try:
            await eventually(lambda: _applied(sessionmaker, ids[-1]))
        finally:
            await running.stop()
        assert [str(i) for i in ids] == [e for batch in calls for e in batch]
        assert len(calls) < len(ids)  # batches, not one call per event

    async def test_failing_event_is_retried_alone_while_the_others_are_applied(
        self, nats_url: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        name, calls = unique_name("flaky"), Calls()
        flaky, good = uuid7(), uuid7()
        failures = {"left": 2}

        def fail(e: Event[dict[str, Any]]) -> bool:
            if e.id == flaky and failures["left"] > 0:
                failures["left"] -= 1
                return True
            return False

        await publish(nats_url, subject(name), flaky)
        await publish(nats_url, subject(name), good)
        running = await start(nats_url, sessionmaker, probe_consumer(name, calls, fail=fail))
        try:
            await eventually(lambda: _applied(sessionmaker, flaky))
        finally:
            await running.stop()
        assert await count(sessionmaker, "SELECT count(*) FROM probe WHERE event_id = :e", e=good) == 1
        assert await count(sessionmaker, "SELECT count(*) FROM probe WHERE event_id = :e", e=flaky) == 1

    async def test_poison_event_is_parked_and_can_be_replayed(
        self, nats_url: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        name, calls = unique_name("poison"), Calls()
        broken = {"yes": True}
        poison, after = uuid7(), uuid7()
        consumer = probe_consumer(name, calls, fail=lambda e: e.id == poison and broken["yes"])
        running = await start(nats_url, sessionmaker, consumer, max_attempts=3)
        try:
            await publish(nats_url, subject(name), poison, workspace="ws-poison")
            await publish(nats_url, subject(name), after, workspace="ws-poison")

            async def parked() -> bool:
                return await count(sessionmaker, "SELECT count(*) FROM dead_letter WHERE event_id = :e", e=poison) == 1

            await eventually(parked, within=30)
            await eventually(lambda: _applied(sessionmaker, after))
            attempts = sum(ids.count(str(poison)) for ids in calls)
            # parked and acknowledged: a marker after it is applied without another try of it
            marker = uuid7()
            await publish(nats_url, subject(name), marker)
            await eventually(lambda: _applied(sessionmaker, marker))
            assert sum(ids.count(str(poison)) for ids in calls) == attempts
            async with sessionmaker() as s:
                page = await list_dead_letters(s, workspace_id="ws-poison", consumer=name, cursor=None, limit=10)
            (dead,) = page.items
            assert (dead.consumer, dead.attempts, dead.event_id) == (name, 3, poison)
            assert "cannot handle" in dead.error
            assert dead.event is not None
            broken["yes"] = False  # the cause is fixed: the replay applies it
            replayed = await replay_dead_letter(
                sessionmaker, running.runners, dead_letter_id=dead.id, workspace_id="ws-poison"
            )
        finally:
            await running.stop()
        assert replayed.replayed_to == "consumer"
        assert await _applied(sessionmaker, poison)
        assert await count(sessionmaker, "SELECT count(*) FROM dead_letter WHERE event_id = :e", e=poison) == 0

    async def test_a_long_batch_is_kept_in_progress_and_not_redelivered(
        self, nats_url: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        name, calls = unique_name("slow"), Calls()
        event_id = uuid7()
        await publish(nats_url, subject(name), event_id)
        # Two replicas; ack wait 1.5 s, heartbeats every 0.5 s, the batch takes 4 s: without the
        # heartbeats JetStream would hand the event to the idle replica meanwhile.
        consumer = probe_consumer(name, calls, delay=4.0)
        running = await start(nats_url, sessionmaker, consumer, ack_wait_seconds=1.5)
        replica = await start(nats_url, sessionmaker, consumer, ack_wait_seconds=1.5)
        try:
            await eventually(lambda: _applied(sessionmaker, event_id), within=20)
            marker = uuid7()
            await publish(nats_url, subject(name), marker)
            await eventually(lambda: _applied(sessionmaker, marker), within=20)
            nc = await nats.connect(nats_url)
            try:
                info = await nc.jetstream().consumer_info("JOURNEY", name)
            finally:
                await nc.close()
        finally:
            await running.stop()
            await replica.stop()
        # every message of the stream delivered once: as many deliveries as stream sequence numbers
        assert info.delivered.consumer_seq == info.delivered.stream_seq
        assert sum(ids.count(str(event_id)) for ids in calls) == 1

    async def test_as_of_is_the_last_applied_event_time_per_workspace(
        self, nats_url: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        name, calls = unique_name("asof"), Calls()
        workspace, event_id = unique_name("ws"), uuid7()
        before = datetime.now(UTC)
        await publish(nats_url, subject(name), event_id, workspace=workspace)
        running = await start(nats_url, sessionmaker, probe_consumer(name, calls))
        try:
            await eventually(lambda: _applied(sessionmaker, event_id))
        finally:
            await running.stop()
        async with sessionmaker() as s:
            held = await as_of(s, consumer=name, workspace_id=workspace)
            other = await as_of(s, consumer=name, workspace_id=unique_name("ws"))
        assert held is not None
        assert before <= held <= datetime.now(UTC)
        assert other is None

    async def test_replay_rebuilds_from_the_start_of_the_stream(
        self, nats_url: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        name, calls = unique_name("replay"), Calls()
        ids = [uuid7() for _ in range(5)]
        for event_id in ids:
            await publish(nats_url, subject(name), event_id)
        probe = probe_consumer(name, calls)
        consumer = Consumer(
            name=name,
            stream="journey",
            apply=probe.apply,
            types=probe.types,
            reset=(f"DELETE FROM probe WHERE note = '{name}'",),
        )
        running = await start(nats_url, sessionmaker, consumer)
        try:
            await eventually(lambda: _applied(sessionmaker, ids[-1]))
            nc = await nats.connect(nats_url)
            try:
                applied = await running.runners[name].replay(nc)
            finally:
                await nc.close()
        finally:
            await running.stop()
        assert applied == len(ids)
        assert await count(sessionmaker, "SELECT count(*) FROM probe WHERE note = :n", n=name) == len(ids)

    async def test_an_event_a_crashed_replica_held_comes_back_within_the_ack_wait(
        self, nats_url: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        name, calls = unique_name("crash"), Calls()
        event_id = uuid7()
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        # the durable as an earlier version made it, with a 60 s ack wait
        old = ConsumerConfig(name=name, durable_name=name, filter_subject="journey.>", ack_wait=60)
        await js.add_consumer("JOURNEY", old)
        await publish(nats_url, subject(name), event_id)
        # a replica takes the event and dies before acknowledging it (its connection drops)
        sub = await js.pull_subscribe_bind(durable=name, stream="JOURNEY")
        taken: list[str] = []
        while str(event_id) not in taken:
            taken += [orjson.loads(m.data)["id"] for m in await sub.fetch(1000, timeout=5)]
        await nc.close()
        crashed = time.monotonic()
        ack_wait = ServiceSettings.model_fields["consumer_ack_wait_seconds"].default
        running = await start(nats_url, sessionmaker, probe_consumer(name, calls), ack_wait_seconds=ack_wait)
        try:
            await eventually(lambda: _applied(sessionmaker, event_id), within=30)
            info = await running.nc.jetstream().consumer_info("JOURNEY", name)
        finally:
            await running.stop()
        assert time.monotonic() - crashed < 20  # not after the 60 s the durable was made with
        assert info.config.ack_wait == ack_wait  # the existing durable was updated

    def test_backoff_grows_exponentially_with_a_cap(self) -> None:
        assert [backoff_seconds(a) for a in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
        assert backoff_seconds(30) == 300.0


async def _applied(sm: async_sessionmaker[AsyncSession], event_id: Any) -> bool:
    return await count(sm, "SELECT count(*) FROM probe WHERE event_id = :e", e=event_id) >= 1
