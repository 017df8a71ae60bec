"""The gateway's event hub on a real NATS: coalescing per key, a full mailbox, a lost connection; and
what a subscriber of a gateway process sees when that process loses NATS."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from gql.transport.exceptions import TransportQueryError

from gateway.events import EventHub, EventsMissed, Listener
from services.common.embedded import free_port, start_nats, stop_process
from services.common.events import encode_event
from tests.conftest import Keys, Servers
from tests.gateway.test_live import NPS, WAIT, journey_with_survey, live_session
from tests.scoring.factories import Stack
from tests.uvicorn_server import running_service


def _event(workspace: str, type: str, data: dict[str, Any]) -> bytes:
    return encode_event(event_id=uuid.uuid4(), type=type, workspace_id=workspace, occurred_at=datetime.now(UTC),
                        data=data)  # fmt: skip


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """A NATS server of the test's own, with a way to restart it on the same port."""
    port = free_port()
    procs = [start_nats(tmp_path, port)]

    def restart(stop_only: bool = False) -> None:
        stop_process(procs[-1])
        if not stop_only:
            procs.append(start_nats(tmp_path, port))

    yield f"nats://127.0.0.1:{port}", restart
    stop_process(procs[-1])


@contextlib.asynccontextmanager
async def _hub(url: str, queue_size: int) -> AsyncIterator[tuple[EventHub, Any]]:
    hub = EventHub(url, subjects=["t.>"], queue_size=queue_size)
    await hub.start()
    publisher = await nats.connect(url)
    try:
        yield hub, publisher
    finally:
        await publisher.close()
        await hub.stop()


async def _fenced(hub: EventHub, publisher: Any, messages: list[bytes]) -> None:
    """Publish, and return once the hub dispatched them all (a fence event after them, on the same
    subscription, so in order)."""
    with hub.listen(types=frozenset({"t.fence.passed"}), workspace_id="w") as fence:
        for message in messages:
            await publisher.publish(orjson.loads(message)["type"], message)
        await publisher.publish("t.fence.passed", _event("w", "t.fence.passed", {}))
        await asyncio.wait_for(anext(fence), WAIT)


async def _drain(listener: Listener) -> list[dict[str, Any]]:
    got = []
    with contextlib.suppress(TimeoutError):
        while True:
            got.append((await asyncio.wait_for(anext(listener), 0.2)).data)
    return got


class TestEventHub:
    async def test_a_slow_reader_gets_the_latest_per_key(self, broker: tuple[str, Any]) -> None:
        async with _hub(broker[0], queue_size=3) as (hub, publisher):
            metrics = frozenset({"t.metric.updated"})
            with (
                hub.listen(types=metrics, workspace_id="w", key=lambda e: e.data["k"]) as slow,
                hub.listen(types=None, workspace_id=None, key=lambda e: e.workspace_id) as per_workspace,
            ):
                burst = [_event("w", "t.metric.updated", {"k": "ab"[i % 2], "v": i}) for i in range(11)]
                burst += [_event("other", "t.metric.updated", {"k": "c", "v": 0})]  # another workspace
                burst += [_event("w", "t.other.updated", {"k": "d", "v": 0})]  # another type
                await _fenced(hub, publisher, burst)
                # the first of each key keeps its place, with the latest value
                assert await _drain(slow) == [{"k": "a", "v": 10}, {"k": "b", "v": 9}]
                # every type of every workspace, the latest per workspace (w's: the fence after the burst)
                latest = [await asyncio.wait_for(anext(per_workspace), WAIT) for _ in range(2)]
                assert [(e.workspace_id, e.type) for e in latest] == [
                    ("w", "t.fence.passed"),
                    ("other", "t.metric.updated"),
                ]

    async def test_a_full_mailbox_ends_its_reader_only(self, broker: tuple[str, Any]) -> None:
        async with _hub(broker[0], queue_size=3) as (hub, publisher):
            types = frozenset({"t.response.submitted"})
            with hub.listen(types=types, workspace_id="w") as slow, hub.listen(types=types, workspace_id="w") as fast:

                async def read() -> list[dict[str, Any]]:
                    return [(await asyncio.wait_for(anext(fast), WAIT)).data for _ in range(5)]

                reader = asyncio.create_task(read())
                for i in range(5):  # one at a time: the fast reader keeps up, the slow one reads nothing
                    await _fenced(hub, publisher, [_event("w", "t.response.submitted", {"i": i})])
                assert await reader == [{"i": i} for i in range(5)]
                with pytest.raises(EventsMissed, match="more than 3 events"):
                    await anext(slow)

    async def test_a_listener_failing_on_an_event_ends_alone(self, broker: tuple[str, Any]) -> None:
        async with _hub(broker[0], queue_size=3) as (hub, publisher):
            types = frozenset({"t.response.submitted"})
            with (
                hub.listen(types=types, workspace_id="w", key=lambda e: e.data["missing"]) as failing,
                hub.listen(types=types, workspace_id="w") as other,
            ):
                await _fenced(hub, publisher, [_event("w", "t.response.submitted", {"i": 1})])
                assert await _drain(other) == [{"i": 1}]
                with pytest.raises(EventsMissed, match="failed on an event"):
                    await anext(failing)

    async def test_a_lost_broker_ends_every_listener(self, broker: tuple[str, Any]) -> None:
        url, restart = broker
        types = frozenset({"t.response.submitted"})
        async with _hub(url, queue_size=10) as (hub, _):
            with hub.listen(types=types, workspace_id="w") as listener:
                restart(stop_only=True)
                with pytest.raises(EventsMissed, match="lost its connection"):
                    await asyncio.wait_for(anext(listener), WAIT)
            with pytest.raises(EventsMissed, match="not connected"), hub.listen(types=types, workspace_id="w"):
                pass
            restart()
            # reconnected (nats-py waits 2 s between attempts): listening works again
            for _ in range(int(WAIT / 0.1)):
                with contextlib.suppress(EventsMissed), hub.listen(types=types, workspace_id="w"):
                    break
                await asyncio.sleep(0.1)
            publisher = await nats.connect(url)
            try:
                await _fenced(hub, publisher, [])
            finally:
                await publisher.close()


@pytest.fixture
def cut_off_gateway(
    processes: dict[str, str], servers: Servers, keys: Keys, broker: tuple[str, Any], tmp_path: Path
) -> Iterator[tuple[dict[str, str], Any]]:
    """A second gateway process, on the test's own NATS (`broker`), in front of the package's services."""
    url, restart = broker
    services = {f"GATEWAY_{name.upper()}_URL": processes[name] for name in ("journey", "feedback", "scoring")}
    own = Servers(servers.database_url_template, url)
    with running_service("gateway.app:create_app", env_prefix="GATEWAY_", servers=own, keys=keys, log_dir=tmp_path,
                         extra_env=services) as gateway:  # fmt: skip
        yield {"gateway": gateway}, restart


class TestBrokerLoss:
    async def test_a_subscription_cut_off_from_the_events_ends_with_an_error(
        self, cut_off_gateway: tuple[dict[str, str], Any], stack: Stack
    ) -> None:
        gateway, restart = cut_off_gateway
        journey, _ = await journey_with_survey(stack)
        async with live_session(gateway, stack.headers) as session:
            updates = session.subscribe(NPS, journey["id"])
            assert (await updates.next())["npsUpdated"]["n"] == 0  # listening
            restart(stop_only=True)
            with pytest.raises(TransportQueryError, match="lost its connection to the event broker") as raised:
                await updates.next()
        assert raised.value.errors is not None
        assert raised.value.errors[0]["extensions"]["code"] == "EVENTS_MISSED"
