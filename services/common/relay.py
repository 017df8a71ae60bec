"""The outbox relay: moves committed `outbox_event` rows (written by `outbox.py`) to JetStream.

- It claims pending rows with FOR UPDATE SKIP LOCKED (several replicas share the table), publishes
  them with the event id as `Nats-Msg-Id` (the stream drops duplicates in its window, so a relay that
  crashes between publish and mark does not publish twice), then marks them published in the same
  transaction. A row that keeps failing while others publish is parked in `dead_letter` (an error log
  and a metric name it), so it never holds up the rows after it.
- A broker that is away or hung delays events and loses none: the relay claims nothing while the
  connection is down, a batch not acknowledged within the publish timeout is rolled back (nats-py
  never fails an acknowledgement when the connection drops) and retried once the broker answers, and
  `journeygraph_outbox_oldest_pending_seconds` shows a backlog that is not draining.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import structlog
from nats.aio.client import DEFAULT_PENDING_SIZE
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.idempotency import purge_idempotency_keys
from services.common.ids import new_ids
from services.common.outbox import RELAY
from services.common.worker import LoopWorker

log = structlog.get_logger(__name__)

PUBLISHED = Counter("journeygraph_outbox_published", "Events the outbox relay published.", ["service"])
PARKED = Counter(
    "journeygraph_outbox_parked", "Outbox rows parked in dead_letter after failing repeatedly.", ["service"]
)
BACKLOG_AGE = Gauge(
    "journeygraph_outbox_oldest_pending_seconds",
    "Age of the oldest committed event not yet published (0: none); growing means the outbox is not draining.",
    ["service"],
)


_CLAIM = text(
    "SELECT id, workspace_id, subject, payload, headers, attempts FROM outbox_event "
    "WHERE published_at IS NULL ORDER BY created_at, id LIMIT :n FOR UPDATE SKIP LOCKED"
)
_MARK = text("UPDATE outbox_event SET published_at = now() WHERE id = ANY(:ids)")
_FAILED = text(
    "UPDATE outbox_event SET attempts = attempts + 1, last_error = t.error "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:errors AS text[])) AS t(id, error) WHERE outbox_event.id = t.id"
)
_PARK = text(
    "WITH parked AS (DELETE FROM outbox_event WHERE id = ANY(:ids) "
    "RETURNING id, workspace_id, subject, payload, attempts, last_error) "
    "INSERT INTO dead_letter (id, consumer, workspace_id, event_id, subject, payload, error, attempts) "
    "SELECT d.id, :consumer, p.workspace_id, p.id, p.subject, p.payload, p.last_error, p.attempts "
    "FROM parked p JOIN unnest(CAST(:ids AS uuid[]), CAST(:dead_ids AS uuid[])) AS d(event_id, id) ON d.event_id = p.id"
)
# Half of nats-py's outgoing buffer (`pending_size`): with a row of at most max_payload on top, a
# publish never fills it (a full buffer blocks the publish until the connection drops).
_PENDING_LIMIT = DEFAULT_PENDING_SIZE // 2
_OLDEST = text(
    "SELECT coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0) "
    "FROM outbox_event WHERE published_at IS NULL"
)


async def backlog_seconds(conn: AsyncConnection) -> float:
    """How long the oldest committed event has waited to be published (0: nothing waits)."""
    return max(0.0, float(await conn.scalar(_OLDEST) or 0))


class RelayStalled(Exception):
    """Nothing of a batch could be published (the broker is unreachable or refusing): retried later."""


class OutboxRelay(LoopWorker):
    """Moves committed outbox rows to JetStream; runs in every replica. It starts with the service and
    publishes once `attach` gave it the broker's connection; meanwhile it measures the backlog."""

    name = "outbox-relay"

    def __init__(
        self,
        engine: AsyncEngine,
        nc: NATS | None = None,
        *,
        service: str,
        poll_seconds: float = 1.0,
        batch_size: int = 500,
        max_attempts: int = 5,
        publish_timeout_seconds: float = 10.0,
        retention_hours: int = 24,
        inbox_retention_days: int = 7,
        idempotency_ttl_hours: int = 48,
    ) -> None:
        super().__init__(idle_seconds=poll_seconds)
        self._engine = engine
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._service = service
        self._batch_size = batch_size
        self._max_attempts = max_attempts
        self._publish_timeout = publish_timeout_seconds
        self._retention_hours = retention_hours
        self._inbox_retention_days = inbox_retention_days
        self._idempotency_ttl = timedelta(hours=idempotency_ttl_hours)
        self._last_purge = 0.0
        self._measuring: asyncio.Task[None] | None = None
        self._stalled: str | None = None  # why the last pass published nothing, once logged
        self.published = 0
        if nc is not None:
            self.attach(nc)

    def attach(self, nc: NATS) -> None:
        """The broker connection to publish on (the service connects in the background)."""
        self._nc = nc
        self._js = nc.jetstream()
        self.wake()

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    def start(self) -> None:
        super().start()
        self._measuring = asyncio.create_task(self._measure(), name="outbox backlog")

    async def _measure(self) -> None:
        """The backlog gauge, every second, apart from the batches (one may wait for acknowledgements)."""
        while True:
            try:
                async with self._engine.connect() as conn:
                    BACKLOG_AGE.labels(self._service).set(await backlog_seconds(conn))
            except Exception as exc:  # the database is away: /readyz says so
                log.debug("outbox backlog not measured", error=repr(exc))
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        if self._measuring is not None:
            self._measuring.cancel()
            await asyncio.wait({self._measuring})
        await super().stop()
        # Publish what was committed before shutdown; what remains is relayed by the next start.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.drain(), timeout=5)

    async def drain(self) -> int:
        """Publish until nothing is pending (rows that fail stay pending or are parked)."""
        total = 0
        while (n := await self.relay_batch()) > 0:
            total += n
        return total

    async def run_once(self) -> bool:
        now = asyncio.get_running_loop().time()
        try:
            n = await self.relay_batch()
        except RelayStalled as exc:
            if self._stalled is None:  # once per stall, not once per poll
                log.warning("outbox relay stalled; events wait in the outbox", reason=str(exc))
            self._stalled = str(exc)
            return False
        if self._stalled is not None:
            log.info("outbox relay publishes again", after=self._stalled)
            self._stalled = None
        if now - self._last_purge > 3600:
            await self._purge()
            self._last_purge = now
        return n == self._batch_size

    async def relay_batch(self) -> int:
        """Publish one batch; returns how many rows left the pending set (published or parked)."""
        if not self.connected:  # claim nothing: the rows' locks would be held for no use
            raise RelayStalled("not connected to the broker")
        async with self._engine.begin() as conn:
            # The batch's row locks are held while its acknowledgements are awaited (bounded by the
            # publish timeout); should this process hang meanwhile, PostgreSQL ends the transaction.
            await conn.execute(text(f"SET LOCAL idle_in_transaction_session_timeout = {self._lock_limit_ms}"))
            rows = (await conn.execute(_CLAIM, {"n": self._batch_size})).all()
            if not rows:
                return 0
            errors = await self._publish(rows)
            ok = [row.id for row, error in zip(rows, errors, strict=True) if error is None]
            failed = [(row, error) for row, error in zip(rows, errors, strict=True) if error is not None]
            if ok:
                await conn.execute(_MARK, {"ids": ok})
            # Others published: these rows fail on their own (too large, a refused subject, ...), so
            # they count towards parking. All failed: the broker is the problem, and nothing counts
            # but a row it could never take.
            counted = [
                (r, e) for r, e in failed if isinstance(e, _RowTooLarge) or (ok and not isinstance(e, _NotTaken))
            ]
            parked: list[Any] = [r for r, _ in counted if r.attempts + 1 >= self._max_attempts]
            if counted:
                await conn.execute(
                    _FAILED, {"ids": [r.id for r, _ in counted], "errors": [repr(e)[:1000] for _, e in counted]}
                )
            if parked:
                await conn.execute(
                    _PARK, {"ids": [r.id for r in parked], "dead_ids": new_ids(len(parked)), "consumer": RELAY}
                )
        self.published += len(ok)
        PUBLISHED.labels(self._service).inc(len(ok))
        for row in parked:
            PARKED.labels(self._service).inc()
            error = next(e for r, e in failed if r.id == row.id)
            log.error("outbox event parked", event_id=str(row.id), subject=row.subject, error=repr(error))
        if failed and not ok and not parked:
            raise RelayStalled(f"{len(failed)} event(s) not published: {failed[0][1]!r}")
        return len(ok) + len(parked)

    @property
    def _lock_limit_ms(self) -> int:
        return int((self._publish_timeout + 20) * 1000)

    async def _publish(self, rows: Sequence[Any]) -> list[BaseException | None]:
        """Publish the rows pipelined (publish_async keeps their order on the connection); the error
        of each row, or None. All of it within the publish timeout, without cancelling nats-py (it
        swallows a cancellation while it flushes):
        - nats-py blocks a publish, beyond any timeout, once its outgoing buffer is full (a hung
          server stops reading): a row goes out only while the buffer has room for it;
        - it fails no acknowledgement when the connection drops: waiting stops when it does (the rows
          are published again after reconnecting; the stream drops what it has by `Nats-Msg-Id`);
        - a publish_async that raises leaks a slot of its semaphore: none is tried while disconnected."""
        nc, js = self._nc, self._js
        assert nc is not None
        assert js is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._publish_timeout
        sent: list[asyncio.Future[Any] | BaseException] = []
        for row in rows:
            if len(row.payload) > nc.max_payload - 4096:  # nats-py would leak its future
                sent.append(_RowTooLarge(f"{len(row.payload)} bytes over the broker's max_payload"))
                continue
            # nats-py has no event for "its buffer drained": poll it.
            while nc.is_connected and nc.pending_data_size > _PENDING_LIMIT and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            if not nc.is_connected or nc.pending_data_size > _PENDING_LIMIT:
                sent.append(_NotTaken("the broker connection is down or not taking data"))
                continue
            try:
                headers = {**row.headers, "Nats-Msg-Id": str(row.id)}
                sent.append(await js.publish_async(row.subject, row.payload, headers=headers))
            except Exception as exc:
                sent.append(exc)
        pending = {f for f in sent if isinstance(f, asyncio.Future)}
        while pending and nc.is_connected and (left := deadline - loop.time()) > 0:
            _, pending = await asyncio.wait(pending, timeout=min(0.25, left))
        errors: list[BaseException | None] = []
        for f in sent:
            if isinstance(f, BaseException):
                errors.append(f)
            elif not f.done():
                f.cancel()  # releases its slot of nats-py's pending semaphore
                errors.append(_NotTaken(f"no acknowledgement within {self._publish_timeout} s"))
            elif f.cancelled():
                errors.append(asyncio.CancelledError("publish cancelled"))
            else:
                errors.append(f.exception())
        return errors

    async def _purge(self) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                text("DELETE FROM outbox_event WHERE published_at < now() - make_interval(hours => :h)"),
                {"h": self._retention_hours},
            )
            # The inbox dedupes redeliveries, which come within minutes (ack wait × attempts); a
            # replay from the start clears a consumer's inbox itself.
            await conn.execute(
                text("DELETE FROM inbox_event WHERE processed_at < now() - make_interval(days => :d)"),
                {"d": self._inbox_retention_days},
            )
            await purge_idempotency_keys(conn, self._idempotency_ttl)  # a retry after that is a new request


class _RowTooLarge(Exception):
    """A row the broker cannot take whatever its state."""


class _NotTaken(Exception):
    """Not published because of the broker or the connection, not the row: never counts to parking."""
