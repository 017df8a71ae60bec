"""`Idempotency-Key` on every POST: a retry returns the original result, stored in the same
transaction as the change it describes.

- same key, same request (method, path, query, content type, body): the original status and body
  again, with `Idempotent-Replayed: true`;
- same key, another request: 409 naming the difference;
- two requests with one key at once: the second waits for the first's transaction (a transaction
  lock on the key, taken before the lookup), then replays its result, or does the work itself if
  the first failed. Nothing else answers a concurrent duplicate.

Keys are remembered `idempotency_ttl_hours`; `purge_idempotency_keys` deletes older ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

import orjson
from fastapi import Depends, Header, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, TypeAdapter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.common.db import SessionDep
from services.common.errors import Conflict, Problem

REPLAY_HEADER = "Idempotent-Replayed"
JSON = "application/json"

# Held until the transaction ends: a request with the same key waits here for the first one's
# commit and then finds its stored result (a collision of the hash merely serialises two keys).
_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(CAST(:w AS text) || ' ' || CAST(:k AS text), 0))")
_LOOKUP = text(
    "SELECT method, path, request_hash, status_code, response_body FROM idempotency_key "
    "WHERE workspace_id = :w AND key = :k AND created_at > now() - make_interval(hours => :ttl)"
)
# Under the lock a row for the key is either absent or expired (the lookup would have found it).
_STORE = text(
    "INSERT INTO idempotency_key (workspace_id, key, method, path, request_hash, status_code, response_body) "
    "VALUES (:w, :k, :method, :path, :hash, :status, :body) "
    "ON CONFLICT (workspace_id, key) DO UPDATE SET method = EXCLUDED.method, path = EXCLUDED.path, "
    "request_hash = EXCLUDED.request_hash, status_code = EXCLUDED.status_code, "
    "response_body = EXCLUDED.response_body, created_at = now()"
)
_PURGE = text("DELETE FROM idempotency_key WHERE created_at < now() - CAST(:age AS interval)")
_any = TypeAdapter(Any)


class IdempotentReplay(Exception):
    def __init__(self, status_code: int, body: bytes, media_type: str = JSON) -> None:
        self.status_code = status_code
        self.body = body
        self.media_type = media_type


def replay_response(exc: IdempotentReplay) -> Response:
    return Response(exc.body, status_code=exc.status_code, media_type=exc.media_type, headers={REPLAY_HEADER: "true"})


class Idempotency:
    def __init__(
        self,
        session: Any,
        *,
        workspace_id: str,
        key: str | None,
        method: str,
        path: str,
        request_hash: str,
    ) -> None:
        self._session = session
        self.workspace_id = workspace_id
        self.key = key
        self._method = method
        self._path = path
        self._hash = request_hash

    async def respond(self, payload: BaseModel | Any, *, status_code: int = 201) -> Response:
        """Serialise the result, remember it under the key (same transaction), return it."""
        if isinstance(payload, BaseModel):
            body = payload.__pydantic_serializer__.to_json(payload)
        else:
            body = _any.dump_json(payload)
        await self.remember(body, status_code=status_code)
        return Response(body, status_code=status_code, media_type=JSON)

    async def remember(self, body: bytes, *, status_code: int) -> None:
        """Store the answer under the key, in the session's transaction (nothing without a key)."""
        if self.key is None:
            return
        params = {"w": self.workspace_id, "k": self.key, "method": self._method, "path": self._path,
                  "hash": self._hash, "status": status_code, "body": body}  # fmt: skip
        await self._session.execute(_STORE, params)


def _canonical_hash(request: Request, body: bytes) -> str:
    """What makes two requests the same: method, path, query (in any order), media type, body
    (JSON in any key order)."""
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS) if body else b""
    except orjson.JSONDecodeError:
        canonical = body
    query = urlencode(sorted(parse_qsl(request.url.query, keep_blank_values=True)))
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    head = f"{request.method} {request.url.path}?{query}\n{media_type}\n".encode()
    return hashlib.sha256(head + canonical).hexdigest()


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        max_length=255,
        description="Any unique string (a UUID is fine). A retry with the same key and request returns "
        "the original result instead of doing the work twice; keys are kept at least 24 h.",
    ),
]


def clean_key(idempotency_key: str | None) -> str | None:
    key = idempotency_key.strip() if idempotency_key else None
    if key == "":
        raise Problem("The Idempotency-Key header is empty; send a unique string or omit it.")
    return key


async def open_idempotency(request: Request, session: Any, key: str | None, *, media_type: str = JSON) -> Idempotency:
    """The request's idempotency in `session`'s transaction: raises IdempotentReplay for a retry of a
    completed request and Conflict for a key reused with another request. With a key, the
    transaction holds the key's lock until it ends."""
    caller = getattr(request.state, "caller", None)
    if caller is None:  # pragma: no cover - a handler declared the dependencies in the wrong order
        raise RuntimeError("declare the caller dependency before IdempotencyDep")
    method, path = request.method, request.url.path
    if key is None:  # nothing to remember: do not read and hash a possibly large body
        return Idempotency(session, workspace_id=caller.workspace_id, key=None, method=method, path=path,
                           request_hash="")  # fmt: skip
    digest = _canonical_hash(request, await request.body())
    params = {"w": caller.workspace_id, "k": key}
    await session.execute(_LOCK, params)
    ttl = request.app.state.settings.idempotency_ttl_hours
    row = (await session.execute(_LOOKUP, {**params, "ttl": ttl})).first()
    if row is not None:
        if (row.method, row.path) != (method, path):
            raise Conflict(
                f"Idempotency-Key {key!r} was already used for {row.method} {row.path}; use a new key for this request."
            )
        if row.request_hash != digest:
            raise Conflict(
                f"Idempotency-Key {key!r} was already used with a different request (body, query string or "
                "content type); use a new key for a different request."
            )
        raise IdempotentReplay(row.status_code, row.response_body, media_type)
    return Idempotency(session, workspace_id=caller.workspace_id, key=key, method=method, path=path,
                       request_hash=digest)  # fmt: skip


async def _idempotency(
    request: Request, session: SessionDep, idempotency_key: IdempotencyKeyHeader = None
) -> Idempotency:
    return await open_idempotency(request, session, clean_key(idempotency_key))


IdempotencyDep = Annotated[Idempotency, Depends(_idempotency)]


async def stream_idempotently(
    request: Request, idempotency_key: str | None, chunks: AsyncIterator[bytes], *, media_type: str
) -> StreamingResponse:
    """A streamed answer whose work commits in transactions of its own (an import), under the
    request's Idempotency-Key: a transaction of its own holds the key from before the first chunk
    until the whole answer is stored with it after the last; a retry replays that answer. A stream
    that fails stores nothing (its committed parts must themselves be safe to send again)."""
    key = clean_key(idempotency_key)
    if key is None:
        return StreamingResponse(chunks, media_type=media_type)
    stack = AsyncExitStack()
    session: AsyncSession = await stack.enter_async_context(request.app.state.sessionmaker())
    await stack.enter_async_context(session.begin())
    try:
        idem = await open_idempotency(request, session, key, media_type=media_type)
    except BaseException as exc:
        await stack.__aexit__(type(exc), exc, exc.__traceback__)
        raise

    async def relay() -> AsyncIterator[bytes]:
        sent: list[bytes] = []
        async with stack:  # commits the stored answer; rolls back if the stream fails
            async for chunk in chunks:
                sent.append(chunk)
                yield chunk
            await idem.remember(b"".join(sent), status_code=200)

    return StreamingResponse(relay(), media_type=media_type)


async def purge_idempotency_keys(session_or_conn: AsyncSession | AsyncConnection, older_than: timedelta) -> int:
    """Delete the keys stored longer ago than `older_than` (the relay runs it with the TTL); how many."""
    result = await session_or_conn.execute(_PURGE, {"age": older_than})
    return int(result.rowcount)  # type: ignore[attr-defined]
