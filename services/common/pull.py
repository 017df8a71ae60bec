"""The pull loops that feed each consumer's Runner from its durable JetStream consumer, and the
service's broker connection they pull through."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import structlog
from faststream import AckPolicy
from faststream.nats import NatsBroker
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.common.consumer import Consumer, Runner
from services.common.events import stream_for

log = structlog.get_logger(__name__)


class PullLoop:
    """Fetches one consumer's batches from its durable JetStream pull consumer and hands them to its
    Runner, in every replica.

    Ours, not FastStream's pull subscriber: FastStream 0.7.8's batch loop catches nats-py's
    `nats.errors.TimeoutError` only, while nats-py's fetch also raises the builtin TimeoutError, which
    ended the loop pass and dropped what it had fetched until the ack wait ran out (30 s stalls); and
    it waits to fill a batch until its timeout even when a lone event is waiting."""

    def __init__(self, runner: Runner, *, config: ConsumerConfig, batch_size: int, idle_seconds: float = 5.0) -> None:
        self.runner = runner
        self._config = config
        self._batch_size = batch_size
        self._idle = idle_seconds
        self._task: asyncio.Task[None] | None = None
        self._sub: JetStreamContext.PullSubscription | None = None
        self._idle_now = asyncio.Event()  # set while no batch is being applied
        self._idle_now.set()
        self._stopping = False

    def start(self, nc: NATS) -> None:
        self._task = asyncio.create_task(self._run(nc.jetstream()), name=f"consumer {self.runner.name}")

    async def stop(self) -> None:
        """Let a batch being applied finish (up to 10 s: what is left is redelivered), then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await self._idle_now.wait()
        self._stopping = True
        while not self._task.done():
            # nats-py's fetch waits in asyncio.wait_for, which on Python 3.11 drops a cancellation that
            # arrives as its wait ends (the loop then fetched on, and shutdown hung): cancel until done.
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=1.0)
        if self._sub is not None:  # else the connection's drain waits for what it still holds
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _run(self, js: JetStreamContext) -> None:
        consumer = self.runner.consumer
        stream = stream_for(f"{consumer.stream}.x")
        while self._sub is None and not self._stopping:
            try:
                # Create or update: nats-py's pull_subscribe binds to an existing durable as it is, so
                # one made with an older ack wait (60 s once) would keep it for good.
                await js.add_consumer(stream, self._config)
                self._sub = await js.pull_subscribe_bind(durable=consumer.name, stream=stream)
            except Exception as exc:  # the broker is not there yet: writes go on, events wait
                log.warning("consumer cannot subscribe yet; retrying", consumer=consumer.name, error=repr(exc))
                await asyncio.sleep(1.0)
        while self._sub is not None and not self._stopping:
            try:
                # One event: at once, however long it waited. Then what else is there now, up to a batch.
                raws = await self._sub.fetch(1, timeout=self._idle)
                with contextlib.suppress(TimeoutError):  # builtin: nats-py raises it and its own subclass
                    raws += await self._sub.fetch(self._batch_size - 1, timeout=0.05)
            except TimeoutError:
                continue
            except Exception as exc:
                log.warning("consumer fetch failed; retrying", consumer=consumer.name, error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            self._idle_now.clear()
            try:
                await self.runner.consume(raws)
            except Exception:  # its own failures are handled per event; anything else: redelivered later
                log.exception("consumer batch failed", consumer=consumer.name)
            finally:
                self._idle_now.set()


def pull_loops(
    consumers: Sequence[Consumer],
    *,
    max_attempts: int = 8,
    ack_wait_seconds: float = 10.0,
    batch_size: int = 200,
) -> list[PullLoop]:
    """A pull loop per consumer (durable, from the start of its stream); `bind` each runner to the
    service's database and `start` the loops once the broker is connected."""
    return [
        PullLoop(
            Runner(consumer, max_attempts=max_attempts, heartbeat_seconds=ack_wait_seconds / 3),
            config=ConsumerConfig(
                name=consumer.name,
                durable_name=consumer.name,
                filter_subject=f"{consumer.stream}.>",
                deliver_policy=DeliverPolicy.ALL,
                max_deliver=max_attempts + 1,
                ack_wait=ack_wait_seconds,
            ),
            batch_size=batch_size,
        )
        for consumer in consumers
    ]


def create_broker(nats_url: str) -> NatsBroker:
    """The service's NATS connection (FastStream: the AsyncAPI document of what the service publishes);
    consumers pull through it with `PullLoop`. It never gives up connecting or reconnecting (nats-py
    stops after 60 attempts by default, two minutes, and the service would never publish again), and
    pings every 10 s, so a hung server is taken for gone within about half a minute (default: 4 min)."""
    return NatsBroker(
        nats_url,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        log_level=logging.DEBUG,
        max_reconnect_attempts=-1,
        ping_interval=10,
    )
