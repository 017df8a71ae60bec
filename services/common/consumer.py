"""Durable, idempotent event consumers on NATS JetStream: the one mechanism that builds every
projection (derived data) and runs every reaction to an event.

- Each `Consumer` is a durable pull consumer of one stream, shared by all replicas of the service. It
  takes bounded batches and applies each in one database transaction that also records the event
  ids in `inbox_event` (a redelivered event has no second effect) and, per workspace, the time of the
  last event applied (`projection_state.as_of`: what a read answers "complete up to").
- While a batch runs, JetStream is told it is still in progress, so a long batch is not redelivered.
- A batch that fails is applied again one event at a time: a failing event is retried with
  exponential backoff (NAK with delay), and after `max_attempts` deliveries it is parked in
  `dead_letter` and acknowledged; the others go on.
- `replay` rebuilds a consumer's projection from the start of the stream (its `reset` statements
  empty it first); the live consumers keep running meanwhile (a lock on the inbox orders the two).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from opentelemetry import propagate, trace
from prometheus_client import Histogram
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common.events import Event, decode_event, stream_for
from services.common.ids import new_ids

log = structlog.get_logger(__name__)
tracer = trace.get_tracer("journeygraph.consumer")

Apply = Callable[[AsyncSession, list[Event[dict[str, Any]]]], Awaitable[None]]

LAG = Histogram(
    "journeygraph_projection_lag_seconds",
    "From an event's occurred_at to its consumer's commit of it.",
    ["consumer"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)


@dataclass(frozen=True, slots=True)
class Consumer:
    """A durable consumer of one stream (`journey`, `feedback`, ...). `apply` gets the new events of
    `types` (every type when None) in stream order, inside the batch's transaction. `reset` empties
    what it builds before a replay from the start (nothing: a replay only adds what is missing)."""

    name: str
    stream: str
    apply: Apply
    types: frozenset[str] | None = None
    reset: tuple[str, ...] = ()


def backoff_seconds(attempt: int, *, base: float = 0.5, cap: float = 300.0) -> float:
    return float(min(cap, base * 2 ** max(0, attempt - 1)))


# One statement per batch: the batch's events claimed in the inbox (the new ones returned), and per
# workspace the time of the last event applied (the whole transaction commits or nothing does).
_CLAIM = text(
    "WITH state AS ("
    " INSERT INTO projection_state AS p (consumer, workspace_id, as_of, applied_at)"
    " SELECT :c, w, max(t), now() FROM unnest(CAST(:ws AS text[]), CAST(:ts AS timestamptz[])) AS e(w, t)"
    " GROUP BY w ORDER BY w"
    " ON CONFLICT (consumer, workspace_id) DO UPDATE SET as_of = greatest(p.as_of, EXCLUDED.as_of), applied_at = now()"
    ") INSERT INTO inbox_event (consumer, event_id) SELECT :c, e FROM unnest(CAST(:ids AS uuid[])) e "
    "ON CONFLICT DO NOTHING RETURNING event_id"
)
# A reset and a batch applied at the same time must not interleave (the reset could delete what the
# batch applied and miss its inbox rows): the reset locks the inbox against new claims; a batch that
# claimed first makes the reset wait for its commit.
_LOCK_INBOX = text("LOCK TABLE inbox_event IN SHARE ROW EXCLUSIVE MODE")
_PARK = text(
    "INSERT INTO dead_letter (id, consumer, workspace_id, event_id, subject, payload, error, attempts) "
    "VALUES (:id, :consumer, :workspace_id, :event_id, :subject, :payload, :error, :attempts)"
)


class Runner:
    """How a consumer applies events: live batches, one by one after a failure, a replay, a dead letter."""

    def __init__(
        self,
        consumer: Consumer,
        sessionmaker: async_sessionmaker[AsyncSession] | None = None,
        *,
        max_attempts: int = 8,
        heartbeat_seconds: float = 10.0,
    ) -> None:
        self.consumer = consumer
        self._bound = sessionmaker
        self._max_attempts = max_attempts
        self._heartbeat = heartbeat_seconds

    def bind(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        """The database it applies to (the service's, once its lifespan made the engine)."""
        self._bound = sessionmaker

    @property
    def _sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        if self._bound is None:
            raise RuntimeError(f"consumer {self.name} has no database yet (bind it first)")
        return self._bound

    @property
    def name(self) -> str:
        return self.consumer.name

    async def apply(self, session: AsyncSession, events: Sequence[Event[dict[str, Any]]]) -> int:
        """Apply the events in the caller's transaction: claim them in the inbox, hand the new ones of
        the consumer's types to `apply`, advance `as_of`. Returns how many were new."""
        c = self.consumer
        wanted = [e for e in events if c.types is None or e.type in c.types]
        params = {
            "c": c.name,
            "ids": [e.id for e in wanted],
            "ws": [e.workspace_id for e in events],
            "ts": [e.occurred_at for e in events],
        }
        claimed = set((await session.execute(_CLAIM, params)).scalars())
        new: list[Event[dict[str, Any]]] = []
        for e in wanted:  # a batch may hold an event twice (a redelivery): the first copy counts
            if e.id in claimed:
                claimed.discard(e.id)
                new.append(e)
        if new:
            await c.apply(session, new)
        return len(new)

    async def apply_now(self, events: Sequence[Event[dict[str, Any]]]) -> int:
        async with self._sessionmaker() as session, session.begin():
            return await self.apply(session, events)

    async def consume(self, raws: list[Msg]) -> None:
        """The live path: one fetched batch of messages, acknowledged (or NAKed) one by one."""
        async with self._in_progress(raws):
            await self._consume(raws)

    async def _consume(self, raws: list[Msg]) -> None:
        decoded: list[tuple[Msg, Event[dict[str, Any]]]] = []
        for raw in raws:
            try:
                decoded.append((raw, decode_event(raw.data)))
            except Exception as exc:  # a message no one can read is parked, not retried forever
                await self._park(raw, None, f"undecodable event: {exc}")
        if not decoded:
            return
        done: list[tuple[Msg, Event[dict[str, Any]]]] = []
        try:
            with self._span(decoded):
                await self.apply_now([e for _, e in decoded])
            done = decoded
        except Exception as exc:
            log.warning("batch failed; applying its events one by one", consumer=self.name, error=repr(exc))
            for raw, event in decoded:
                try:
                    with self._span([(raw, event)]):
                        await self.apply_now([event])
                    done.append((raw, event))
                except Exception as one:
                    await self._retry_or_park(raw, event, one)
        now = time.time()
        for raw, event in done:
            await raw.ack()
            LAG.labels(self.name).observe(max(0.0, now - event.occurred_at.timestamp()))

    async def _retry_or_park(self, raw: Msg, event: Event[dict[str, Any]], error: Exception) -> None:
        attempt = raw.metadata.num_delivered or 1
        if attempt >= self._max_attempts:
            log.error("event parked", consumer=self.name, event_id=str(event.id), attempts=attempt, error=repr(error))
            await self._park(raw, event, repr(error), attempts=attempt)
            return
        delay = backoff_seconds(attempt)
        log.warning(
            "event failed; will retry",
            consumer=self.name,
            event_id=str(event.id),
            attempt=attempt,
            retry_in=delay,
            error=repr(error),
        )
        await raw.nak(delay=delay)

    async def _park(
        self, raw: Msg, event: Event[dict[str, Any]] | None, error: str, *, attempts: int | None = None
    ) -> None:
        await self.park(
            subject=raw.subject,
            payload=raw.data,
            event=event,
            error=error,
            attempts=attempts or raw.metadata.num_delivered or 1,
        )
        await raw.ack()

    async def park(
        self, *, subject: str, payload: bytes, event: Event[dict[str, Any]] | None, error: str, attempts: int
    ) -> None:
        async with self._sessionmaker() as session, session.begin():
            await session.execute(
                _PARK,
                {
                    "id": new_ids(1)[0],
                    "consumer": self.name,
                    "workspace_id": event.workspace_id if event else None,
                    "event_id": event.id if event else None,
                    "subject": subject,
                    "payload": payload,
                    "error": error[:2000],
                    "attempts": attempts,
                },
            )

    @contextlib.asynccontextmanager
    async def _in_progress(self, raws: list[Msg]) -> AsyncIterator[None]:
        """Tell JetStream every `heartbeat_seconds` that the batch is being worked on."""

        async def beat() -> None:
            while True:
                await asyncio.sleep(self._heartbeat)
                for raw in raws:
                    with contextlib.suppress(Exception):  # already acknowledged: nothing to extend
                        await raw.in_progress()

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _span(self, decoded: Sequence[tuple[Msg, Event[dict[str, Any]]]]) -> Any:
        links = []
        for raw, _ in decoded[:32]:
            span_context = trace.get_current_span(propagate.extract(dict(raw.headers or {}))).get_span_context()
            if span_context.is_valid:
                links.append(trace.Link(span_context))
        return tracer.start_as_current_span(f"apply {self.name}", links=links, attributes={"events": len(decoded)})

    async def reset(self) -> None:
        """Empty what the consumer built, its inbox and its as_of, in one transaction."""
        async with self._sessionmaker() as session, session.begin():
            await session.execute(_LOCK_INBOX)
            for statement in self.consumer.reset:
                await session.execute(text(statement))
            for table in ("inbox_event", "projection_state"):
                await session.execute(text(f"DELETE FROM {table} WHERE consumer = :c"), {"c": self.name})

    async def replay(self, nc: NATS, *, batch_size: int = 500) -> int:
        """Rebuild from the start of the stream: reset, then apply every event published so far
        (an event that fails twice is parked). Returns how many events were new."""
        await self.reset()
        js = nc.jetstream()
        stream = stream_for(f"{self.consumer.stream}.x")
        last = (await js.stream_info(stream)).state.last_seq
        if not last:
            return 0
        sub = await js.pull_subscribe(
            f"{self.consumer.stream}.>",
            stream=stream,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, inactive_threshold=300),
        )
        applied, seen = 0, 0
        try:
            while seen < last:
                batch: list[tuple[bytes, Event[dict[str, Any]]]] = []
                for raw in await sub.fetch(batch_size, timeout=10):
                    seen = max(seen, raw.metadata.sequence.stream)
                    if raw.metadata.sequence.stream <= last:
                        try:
                            batch.append((raw.data, decode_event(raw.data)))
                        except Exception as exc:
                            await self.park(
                                subject=raw.subject, payload=raw.data, event=None, error=repr(exc), attempts=1
                            )
                    await raw.ack()
                try:
                    applied += await self.apply_now([e for _, e in batch])
                except Exception:
                    for payload, event in batch:
                        try:
                            applied += await self.apply_now([event])
                        except Exception as exc:
                            await self.park(
                                subject=event.type, payload=payload, event=event, error=repr(exc), attempts=1
                            )
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return applied


async def as_of(session: AsyncSession, *, consumer: str, workspace_id: str) -> datetime | None:
    """The time of the last event `consumer` applied for the workspace: its projection is complete up to it."""
    value = await session.scalar(
        text("SELECT as_of FROM projection_state WHERE consumer = :c AND workspace_id = :w"),
        {"c": consumer, "w": workspace_id},
    )
    return value.astimezone(UTC) if value is not None else None
