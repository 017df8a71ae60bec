"""The response cache: a query's answer, kept for the same document, operation, variables, workspace and
scopes, while no event of that workspace has arrived since it was computed.

- Each workspace has a version, moved on by every event of that workspace (`follow`, a listener of
  the event hub), by every mutation through this gateway (at once, not waiting for its event) and by a
  lost connection to NATS (every workspace: events may have been missed). An answer is kept with the
  version it was computed at, taken before it started; an event during its execution makes it stale
  before it is ever served.
- The services' projections (funnel, paths, metric rollups) follow their own events a moment later,
  so an answer computed right after an event can still show the projection before it: `ttl_seconds`
  bounds how long such an answer can be served.
- Answers with errors are not kept; mutations and subscriptions never are. Nothing is served from it
  while the hub is disconnected.
- The key holds the workspace and the caller's scopes: two workspaces, or two callers who may see
  different fields, never share an entry.

cachetools keeps the entries (bounded, with the TTL); the versions are the gateway's own."""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import orjson
import structlog
from cachetools import TTLCache
from graphql import ExecutionResult
from prometheus_client import Counter
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from gateway.events import EventHub, EventsMissed
from services.common.auth import Caller

log = structlog.get_logger(__name__)
RESULTS = Counter("journeygraph_gateway_cache", "Queries answered from the response cache (hit) or run (miss).",
                  ["result"])  # fmt: skip


class ResponseCache:
    def __init__(self, *, max_entries: int, ttl_seconds: float) -> None:
        self._entries: TTLCache[str, tuple[int, Any]] = TTLCache(maxsize=max_entries, ttl=ttl_seconds)
        self._versions: defaultdict[str, int] = defaultdict(int)
        self.live = False  # set by `follow`: serve only while the events arrive

    def changed(self, workspace_id: str) -> None:
        """Something of the workspace changed: its answers kept so far are not served again."""
        self._versions[workspace_id] += 1

    def forget_all(self) -> None:
        self._entries.clear()
        for workspace_id in self._versions:
            self._versions[workspace_id] += 1

    @staticmethod
    def key(caller: Caller, document: str, operation_name: str | None, variables: dict[str, Any] | None) -> str:
        parts = [caller.workspace_id, " ".join(sorted(caller.scopes)), operation_name or "", document]
        digest = hashlib.sha256(orjson.dumps(parts))
        digest.update(orjson.dumps(variables or {}, option=orjson.OPT_SORT_KEYS))
        return digest.hexdigest()

    def version(self, workspace_id: str) -> int:
        return self._versions[workspace_id]

    def get(self, key: str, workspace_id: str) -> Any | None:
        entry = self._entries.get(key) if self.live else None
        return entry[1] if entry is not None and entry[0] == self._versions[workspace_id] else None

    def put(self, key: str, version: int, data: Any) -> None:
        if self.live:
            self._entries[key] = (version, data)


async def follow(cache: ResponseCache, hub: EventHub, *, retry_seconds: float = 1.0) -> None:
    """Move the workspaces' versions on with the events, for as long as the gateway runs. Serving from
    the cache stops whenever events may have been missed, and starts again, empty, once they arrive."""
    while True:
        try:
            # One place per workspace: a burst of a workspace's events is one move of its version.
            with hub.listen(types=None, workspace_id=None, key=lambda e: e.workspace_id) as events:
                cache.live = True
                async for event in events:
                    cache.changed(event.workspace_id)
        except EventsMissed as missed:
            log.warning("the response cache stops serving until events arrive again", reason=str(missed))
        cache.live = False
        cache.forget_all()
        await asyncio.sleep(retry_seconds)


class CacheResponses(SchemaExtension):
    """Answers a query from the cache before it runs; keeps its answer after, when it has no errors."""

    def __init__(self, cache: ResponseCache) -> None:
        self.cache = cache

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        caller: Caller | None = getattr(ctx.context, "caller", None)
        if caller is not None and ctx.operation_type is OperationType.MUTATION:
            yield
            self.cache.changed(caller.workspace_id)  # at once, not waiting for the write's events
            return
        if caller is None or ctx.query is None or ctx.operation_type is not OperationType.QUERY:
            yield
            return
        key = self.cache.key(caller, ctx.query, ctx.operation_name, ctx.variables)
        version = self.cache.version(caller.workspace_id)
        cached = self.cache.get(key, caller.workspace_id)
        if cached is not None:
            RESULTS.labels("hit").inc()
            ctx.result = ExecutionResult(data=cached)
            yield
            return
        RESULTS.labels("miss").inc()
        yield
        result = ctx.result
        if result is not None and not result.errors and result.data is not None:
            self.cache.put(key, version, result.data)
