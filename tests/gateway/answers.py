"""Reading the gateway with a real GraphQL client (gql) and the services with their own REST APIs, and
comparing the two answers: REST's snake_case and GraphQL's camelCase made alike, times compared as
times, and a read repeated while background work still moves the service's answer."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import httpx
from gql import Client, GraphQLRequest
from gql.transport.httpx import HTTPXAsyncTransport

TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


async def ask(url: str, headers: dict[str, str], query: str, **variables: Any) -> dict[str, Any]:
    """The gateway's data for a document (gql raises TransportQueryError on any error)."""
    transport = HTTPXAsyncTransport(url=f"{url}/graphql", headers=headers, timeout=30)
    async with Client(transport=transport) as session:
        result: dict[str, Any] = await session.execute(GraphQLRequest(query, variable_values=variables))
        return result


async def rest(client: httpx.AsyncClient, headers: dict[str, str], url: str, **params: Any) -> Any:
    response = await client.get(url, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def rest_pages(
    client: httpx.AsyncClient, headers: dict[str, str], url: str, limit: int, **params: Any
) -> list[dict[str, Any]]:
    """Every page of a REST list, following `next_cursor` to the end."""
    pages, cursor = [], None
    while True:
        page = await rest(client, headers, url, limit=limit, **params, **({"cursor": cursor} if cursor else {}))
        pages.append(page)
        if (cursor := page["next_cursor"]) is None:
            return pages


def norm(value: Any) -> Any:
    """REST and GraphQL shapes made comparable: keys camelCased, times parsed (`Z` and `+00:00` alike)."""
    if isinstance(value, dict):
        return {re.sub(r"_([a-z])", lambda m: m[1].upper(), k): norm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [norm(v) for v in value]
    return datetime.fromisoformat(value) if isinstance(value, str) and TIME.match(value) else value


def same_fields(got: dict[str, Any], answered: dict[str, Any]) -> None:
    """Every field the gateway answered equals the service's field of that name."""
    expected = norm(answered)
    assert set(got) <= set(expected), set(got) - set(expected)
    assert norm(got) == {k: expected[k] for k in got}


def difference(got: Any, expected: Any, path: str = "") -> str:
    """Where two answers first differ, for a failure message."""
    if isinstance(got, dict) and isinstance(expected, dict) and got.keys() == expected.keys():
        return next((difference(got[k], expected[k], f"{path}.{k}") for k in got if got[k] != expected[k]), "")
    if isinstance(got, list) and isinstance(expected, list) and len(got) == len(expected):
        pairs = enumerate(zip(got, expected, strict=True))
        return next((difference(g, e, f"{path}[{i}]") for i, (g, e) in pairs if g != e), "")
    return f"at {path or 'the top'}: {got!r} != {expected!r}"


def set_aside(value: Any, times: set[datetime]) -> Any:
    """The answer with its `asOf` values taken out into `times` (an answer read from the responses
    themselves is stamped with its read time, so two reads never share it)."""
    if isinstance(value, dict):
        times.update(v for k, v in value.items() if k == "asOf")
        return {k: None if k == "asOf" else set_aside(v, times) for k, v in value.items()}
    if isinstance(value, list):
        return [set_aside(v, times) for v in value]
    return value


async def agreed(service: Callable[[], Awaitable[Any]], gateway: Callable[[], Awaitable[Any]]) -> Any:
    """The gateway's answer once it equals the service's own read just before and just after it:
    background work (a refit, a projection's `as_of`) may move the service's answer meanwhile."""
    deadline = time.monotonic() + 30
    while True:
        before, got, after = await service(), await gateway(), await service()
        if before == got == after or time.monotonic() > deadline:
            assert got == after, difference(got, after)
            return got
        await asyncio.sleep(0.3)
