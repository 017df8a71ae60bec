"""The outbox relay never stalls behind one row: a row that keeps failing while others publish is
parked in dead_letter (the rows after it flow), and a parked row can be replayed once its cause is
fixed. Its own database and NATS server: the relay here is the only one."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import nats
import orjson
import pytest
import sqlalchemy as sa
from nats.aio.client import Client as NATS
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamConfig
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import create_engine, create_sessionmaker, ensure_database
from services.common.dead_letters import list_dead_letters, replay_dead_letter
from services.common.events import encode_event
from services.common.ids import new_ids
from services.common.kit_tables import define_kit_tables
from services.common.outbox import RELAY, ensure_streams
from services.common.relay import OutboxRelay, RelayStalled
from tests.conftest import Servers, unique_name


@pytest.fixture(scope="module")
def nats_url(own_nats: str) -> str:
    return own_nats


@pytest.fixture(scope="module")
async def engine(servers: Servers) -> AsyncIterator[AsyncEngine]:
    url = servers.database_url(unique_name("jg_relay"))
    await ensure_database(url)
    engine = create_engine(url)
    metadata = sa.MetaData()
    define_kit_tables(metadata)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_url)
    await ensure_streams(client)
    yield client
    await client.close()


async def pend(engine: AsyncEngine, workspace: str, subject: str, *, size: int = 0) -> str:
    """A committed outbox row, as a service's write leaves it (`size`: pad the payload to it)."""
    (event_id,) = new_ids(1)
    payload = encode_event(
        event_id=event_id, type=subject, workspace_id=workspace, occurred_at=datetime.now(UTC), data={"n": 1}
    )
    if size:  # bigger than the budget allows: only a row written around emit() can be this large
        payload = orjson.dumps({**orjson.loads(payload), "pad": "x" * size})
    async with engine.begin() as conn:
        await conn.execute(
            sa.text("INSERT INTO outbox_event (id, workspace_id, subject, payload) VALUES (:id, :w, :s, :p)"),
            {"id": event_id, "w": workspace, "s": subject, "p": payload},
        )
    return event_id


async def stream_ids(nc: NATS, stream: str, workspace: str) -> list[str]:
    js = nc.jetstream()
    last = (await js.stream_info(stream)).state.last_seq
    sub = await js.pull_subscribe("", stream=stream, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
    out, seen = [], 0
    while seen < last:
        for msg in await sub.fetch(500, timeout=5):
            seen = msg.metadata.sequence.stream
            body = orjson.loads(msg.data)
            if body["workspace_id"] == workspace:
                out.append(body["id"])
            await msg.ack()
    await sub.unsubscribe()
    return out


async def relay_passes(relay: OutboxRelay, n: int) -> None:
    for _ in range(n):
        with contextlib.suppress(RelayStalled):
            await relay.relay_batch()


class TestRelay:
    async def test_a_row_the_broker_refuses_is_parked_and_the_rows_after_it_flow(
        self, engine: AsyncEngine, nc: NATS
    ) -> None:
        workspace = unique_name("ws")
        relay = OutboxRelay(engine, nc, service="test", max_attempts=3)
        first = await pend(engine, workspace, "journey.probe.first")
        poison = await pend(engine, workspace, "journey.probe.huge", size=2 * 1024 * 1024)  # over max_payload
        after = [await pend(engine, workspace, "journey.probe.after") for _ in range(3)]
        await relay_passes(relay, 1)
        assert await stream_ids(nc, "JOURNEY", workspace) == [first, *after]  # not held up by the poison row
        await relay_passes(relay, 3)
        assert relay.published == 4
        async with create_sessionmaker(engine)() as session:
            page = await list_dead_letters(session, workspace_id=workspace, consumer=RELAY, cursor=None, limit=10)
            pending = await session.scalar(
                sa.text("SELECT count(*) FROM outbox_event WHERE workspace_id = :w AND published_at IS NULL"),
                {"w": workspace},
            )
        (dead,) = page.items
        assert (str(dead.event_id), dead.subject, dead.attempts) == (poison, "journey.probe.huge", 3)
        assert "max_payload" in dead.error
        assert pending == 0

    async def test_a_row_failing_while_others_publish_is_parked_then_replayed_once_fixed(
        self, engine: AsyncEngine, nc: NATS
    ) -> None:
        workspace = unique_name("ws")
        relay = OutboxRelay(engine, nc, service="test", max_attempts=2)
        orphan = await pend(engine, workspace, "orphan.probe.created")  # no stream carries the subject
        for _ in range(2):
            await pend(engine, workspace, "journey.probe.other")  # others publish: the orphan's failures count
            await relay_passes(relay, 1)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session:
            page = await list_dead_letters(session, workspace_id=workspace, consumer=RELAY, cursor=None, limit=10)
        (dead,) = page.items
        assert str(dead.event_id) == orphan
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="ORPHAN", subjects=["orphan.>"]))  # the cause, fixed
        try:
            replayed = await replay_dead_letter(sessionmaker, {}, dead_letter_id=dead.id, workspace_id=workspace)
            assert replayed.replayed_to == "outbox"
            await relay_passes(relay, 1)
            assert await stream_ids(nc, "ORPHAN", workspace) == [orphan]
        finally:
            await js.delete_stream("ORPHAN")
        async with sessionmaker() as session:
            left = await list_dead_letters(session, workspace_id=workspace, consumer=None, cursor=None, limit=10)
        assert left.items == []

    async def test_an_unreachable_broker_parks_nothing(self, engine: AsyncEngine, nats_url: str) -> None:
        workspace = unique_name("ws")
        client = await nats.connect(nats_url)
        relay = OutboxRelay(engine, client, service="test", max_attempts=1, publish_timeout_seconds=1)
        await client.close()  # every publish fails: the broker is the problem, not the rows
        rows = [await pend(engine, workspace, "journey.probe.waiting") for _ in range(3)]
        for _ in range(3):
            with pytest.raises(RelayStalled):
                await relay.relay_batch()
        async with engine.connect() as conn:
            state: Any = (
                await conn.execute(
                    sa.text(
                        "SELECT count(*) FILTER (WHERE published_at IS NULL) AS pending, max(attempts) AS attempts "
                        "FROM outbox_event WHERE workspace_id = :w"
                    ),
                    {"w": workspace},
                )
            ).one()
            parked = await conn.scalar(
                sa.text("SELECT count(*) FROM dead_letter WHERE workspace_id = :w"), {"w": workspace}
            )
        assert (state.pending, state.attempts, parked) == (len(rows), 0, 0)
