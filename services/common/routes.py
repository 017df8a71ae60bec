"""The route template of a request, found once per method and path for the telemetry libraries.

The OpenTelemetry FastAPI instrumentation (span name, `http.route`) and starlette-exporter (the
`path` label) each find the request's route by matching it against every route of the app again,
besides FastAPI's own routing: measured 40–120 µs each per request in a service with ~45 routes,
~10 % of a small POST's CPU. Neither library takes a lookup of ours, so their module-level lookup
functions are wrapped here with a bounded LRU memo keyed by what a match depends on in our apps
(app or route list, scope type, method, root path, path). `tests/common/test_routes.py` checks that
both functions still exist under these names and that the memo answers what they answer.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

import opentelemetry.instrumentation.fastapi as otel_fastapi
import starlette_exporter.middleware as exporter
from cachetools import LRUCache

_SIZE = 4096  # paths with ids each take an entry; the hot templates stay


class _Memo:
    """Route templates by owner (app or route list) and what a match depends on. Each entry holds
    its owner: while it is memoised no other owner can take its id()."""

    def __init__(self) -> None:
        self._entries: LRUCache[tuple[Any, ...], tuple[Any, str | None]] = LRUCache(_SIZE)

    def get(self, owner: Any, scope: MutableMapping[str, Any], lookup: Callable[[], str | None]) -> str | None:
        key = (id(owner), scope.get("type"), scope.get("method"), scope.get("root_path", ""), scope.get("path"))
        found = self._entries.get(key)
        if found is None or found[0] is not owner:
            found = self._entries[key] = (owner, lookup())
        return found[1]


def _memo_route_details(
    lookup: Callable[[MutableMapping[str, Any]], str | None],
) -> Callable[[MutableMapping[str, Any]], str | None]:
    memo = _Memo()

    def route_details(scope: MutableMapping[str, Any]) -> str | None:
        return memo.get(scope["app"], scope, lambda: lookup(scope))

    route_details.__wrapped__ = lookup  # type: ignore[attr-defined]
    return route_details


def _memo_matching_route_path(lookup: Callable[..., str | None]) -> Callable[..., str | None]:
    memo = _Memo()

    def matching_route_path(scope: Any, routes: Any, route_name: str | None = None) -> str | None:
        if route_name is not None:  # a recursive call into a mounted app: not memoised
            return lookup(scope, routes, route_name)
        return memo.get(routes, scope, lambda: lookup(scope, routes))

    matching_route_path.__wrapped__ = lookup  # type: ignore[attr-defined]
    return matching_route_path


def memoise_route_lookups() -> None:
    """Wrap both libraries' lookups once per process (idempotent). Should a release rename one,
    it is left as it is (slower, still right) and the test of this module fails."""
    details = getattr(otel_fastapi, "_get_route_details", None)
    if details is not None and not hasattr(details, "__wrapped__"):
        otel_fastapi._get_route_details = _memo_route_details(details)  # type: ignore[assignment]
    matching = getattr(exporter, "get_matching_route_path", None)
    if matching is not None and not hasattr(matching, "__wrapped__"):
        exporter.get_matching_route_path = _memo_matching_route_path(matching)
