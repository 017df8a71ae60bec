"""The services' events as the gateway's listeners see them: one NATS connection per gateway process,
whatever the number of clients, fanned out to bounded per-listener mailboxes.

- The hub subscribes once per stream subject (`journey.>`, `feedback.>`, `scoring.>`: one core NATS
  subscription each, on one connection) and only to messages published from now on. Core NATS, not a
  JetStream consumer: a live view wants what happens while it watches; a projection that must see
  every event is a durable consumer in a service.
- A listener names the event types it wants (None: every type) and one workspace (None: every
  workspace), and gets the matching events in arrival order through a mailbox of at most
  `queue_size` entries. An event is decoded only when a listener wants its type.
- A slow listener never blocks the hub or the others: its events wait in its mailbox. Events that
  share a coalescing key (`key(event)`, e.g. one per metric and journey, or one per workspace for a
  cache to drop) take a single place, the latest replacing the one waiting. An event without a key
  (each one matters, e.g. a response submitted), or of a key not waiting yet, that finds the mailbox
  full ends the listener: its iteration raises `EventsMissed`, so its reader knows it missed data,
  never silently.
- The same when the connection to NATS drops (what is published meanwhile is not seen) or NATS
  reports this connection as a slow consumer (it dropped messages): every listener ends with
  `EventsMissed`; a new listener is refused while the hub is disconnected. A reader listens again.
- Each publication arrives once; an event its relay published twice (a retry) arrives twice, with
  the same `id`.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import nats
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import SlowConsumerError

from services.common.events import Event, decode_event

log = structlog.get_logger(__name__)

AnyEvent = Event[dict[str, Any]]


class EventsMissed(Exception):
    """A listener's events are incomplete from here on; the message says why and what to do."""


class Listener:
    """One reader's bounded mailbox; iterate it for its events (see the module's docstring)."""

    def __init__(
        self,
        *,
        types: frozenset[str] | None,
        accepts: Callable[[AnyEvent], bool],
        key: Callable[[AnyEvent], Hashable | None],
        size: int,
    ) -> None:
        self.types = types
        self._accepts, self._key, self._size = accepts, key, size
        self._waiting: OrderedDict[Hashable, AnyEvent] = OrderedDict()
        self._ready = asyncio.Event()
        self._failure: EventsMissed | None = None

    def offer(self, event: AnyEvent) -> None:
        """Take an event of its types and workspace without waiting (the hub's dispatch)."""
        if self._failure is not None or not self._accepts(event):
            return
        key = self._key(event)
        if key is None:
            key = event.id  # its own place: never coalesced
        if key not in self._waiting and len(self._waiting) >= self._size:
            self.fail(f"more than {self._size} events were waiting for this reader; it missed some")
            return
        self._waiting[key] = event  # a waiting event of the same key keeps its place, with the latest value
        self._ready.set()

    def fail(self, reason: str) -> None:
        """End the listener: its reader gets EventsMissed(reason) instead of what is waiting."""
        if self._failure is None:
            self._failure = EventsMissed(reason)
            self._waiting.clear()
            self._ready.set()

    def __aiter__(self) -> Listener:
        return self

    async def __anext__(self) -> AnyEvent:
        while not self._waiting:
            if self._failure is not None:
                raise self._failure
            self._ready.clear()
            await self._ready.wait()
        return self._waiting.popitem(last=False)[1]


class EventHub:
    def __init__(self, nats_url: str, *, subjects: Sequence[str], queue_size: int) -> None:
        self._url, self._subjects, self._queue_size = nats_url, list(subjects), queue_size
        self._nc: NATS | None = None
        self._connected = False
        self._by_workspace: dict[str | None, set[Listener]] = {}
        self._types: Counter[str | None] = Counter()  # event type (None: every type) -> listeners wanting it

    async def start(self) -> None:
        self._nc = await nats.connect(
            self._url,
            name="journeygraph-gateway",
            max_reconnect_attempts=-1,  # a gateway keeps serving queries while NATS is away, and reconnects
            disconnected_cb=self._disconnected,
            reconnected_cb=self._reconnected,
            error_cb=self._error,
        )
        for subject in self._subjects:
            await self._nc.subscribe(subject, cb=self._received)
        self._connected = True

    async def stop(self) -> None:
        self._connected = False
        self._fail_all("the gateway is shutting down; connect again")
        if self._nc is not None:
            await self._nc.close()

    @contextmanager
    def listen(
        self,
        *,
        types: frozenset[str] | None,
        workspace_id: str | None,
        accepts: Callable[[AnyEvent], bool] = lambda _: True,
        key: Callable[[AnyEvent], Hashable | None] = lambda _: None,
    ) -> Iterator[Listener]:
        """A listener for events of `types` in `workspace_id` (None: all) that `accepts`, coalesced by
        `key`; it stops listening when the block ends. EventsMissed while the hub is disconnected."""
        if not self._connected:
            raise EventsMissed("the gateway is not connected to the event broker now; try again in a moment")
        listener = Listener(types=types, accepts=accepts, key=key, size=self._queue_size)
        self._by_workspace.setdefault(workspace_id, set()).add(listener)
        wanted: Counter[str | None] = Counter([None] if types is None else types)
        self._types += wanted
        try:
            yield listener
        finally:
            self._types -= wanted  # the types nobody wants any more go
            listeners = self._by_workspace[workspace_id]
            listeners.discard(listener)
            if not listeners:
                del self._by_workspace[workspace_id]

    async def _received(self, msg: Msg) -> None:
        if msg.subject not in self._types and None not in self._types:
            return  # nobody listens to this type: not even decoded
        try:
            event = decode_event(msg.data)
        except ValueError:
            log.warning("an event that is not an event envelope", subject=msg.subject)
            return
        for workspace_id in (event.workspace_id, None):
            for listener in self._by_workspace.get(workspace_id, ()):
                if listener.types is None or event.type in listener.types:
                    try:
                        listener.offer(event)
                    except Exception:  # its `accepts` or `key` failed: it ends, the others get the event
                        log.exception("a listener failed on an event", type=event.type)
                        listener.fail("the gateway failed on an event for this reader; it missed it")

    def _fail_all(self, reason: str) -> None:
        for listeners in self._by_workspace.values():
            for listener in listeners:
                listener.fail(reason)

    async def _disconnected(self) -> None:
        if self._connected:
            self._connected = False
            log.warning("the gateway lost its connection to NATS; live subscriptions end")
            self._fail_all(
                "the gateway lost its connection to the event broker; events may be missing, subscribe again"
            )

    async def _reconnected(self) -> None:
        self._connected = True

    async def _error(self, error: Exception) -> None:
        if isinstance(error, SlowConsumerError):
            # NATS dropped messages for this connection: whoever listens missed some.
            self._fail_all("the gateway could not keep up with the events and missed some; subscribe again")
        log.warning("NATS error", error=repr(error))
