"""`Idempotency-Key` on every POST: a retry returns the original result, stored in the same
transaction as the change it describes.

- same key, same body: the original status and body again, with `Idempotent-Replayed: true`;
- same key, another body or endpoint: 409 naming the difference;
- two requests with one key at once: the second waits for the first's transaction on the unique
  index, then gets 409 and should retry (it will then be a replay).
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, Request, Response
from pydantic import BaseModel, TypeAdapter
from sqlalchemy import text

from services.common.db import SessionDep
from services.common.errors import Conflict, Problem

REPLAY_HEADER = "Idempotent-Replayed"

_LOOKUP = text(
    "SELECT method, path, request_hash, status_code, response_body FROM idempotency_key "
    "WHERE workspace_id = :w AND key = :k AND created_at > now() - make_interval(hours => :ttl)"
)
_STORE = text(
    "INSERT INTO idempotency_key (workspace_id, key, method, path, request_hash, status_code, response_body) "
    "VALUES (:w, :k, :method, :path, :hash, :status, :body) "
    "ON CONFLICT (workspace_id, key) DO UPDATE SET method = EXCLUDED.method, path = EXCLUDED.path, "
    "request_hash = EXCLUDED.request_hash, status_code = EXCLUDED.status_code, "
    "response_body = EXCLUDED.response_body, created_at = now() "
    "WHERE idempotency_key.created_at <= now() - make_interval(hours => :ttl) "
    "RETURNING key"
)
_any = TypeAdapter(Any)


class IdempotentReplay(Exception):
    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code = status_code
        self.body = body


def replay_response(exc: IdempotentReplay) -> Response:
    return Response(
        exc.body, status_code=exc.status_code, media_type="application/json", headers={REPLAY_HEADER: "true"}
    )


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
        ttl_hours: int,
    ) -> None:
        self._session = session
        self.workspace_id = workspace_id
        self.key = key
        self._method = method
        self._path = path
        self._hash = request_hash
        self._ttl = ttl_hours

    async def respond(self, payload: BaseModel | Any, *, status_code: int = 201) -> Response:
        """Serialise the result, remember it under the key (same transaction), return it."""
        if isinstance(payload, BaseModel):
            body = payload.__pydantic_serializer__.to_json(payload)
        else:
            body = _any.dump_json(payload)
        if self.key is not None:
            stored = await self._session.execute(
                _STORE,
                {
                    "w": self.workspace_id,
                    "k": self.key,
                    "method": self._method,
                    "path": self._path,
                    "hash": self._hash,
                    "status": status_code,
                    "body": body,
                    "ttl": self._ttl,
                },
            )
            if stored.first() is None:
                raise Conflict(
                    f"Another request with Idempotency-Key {self.key!r} was completed while this one "
                    "ran; retry to receive its result."
                )
        return Response(body, status_code=status_code, media_type="application/json")


def _canonical_hash(method: str, path: str, body: bytes) -> str:
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS) if body else b""
    except orjson.JSONDecodeError:
        canonical = body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        max_length=255,
        description="Any unique string (a UUID is fine). A retry with the same key and body returns "
        "the original result instead of doing the work twice; keys are kept at least 24 h.",
    ),
]


def clean_key(idempotency_key: str | None) -> str | None:
    key = idempotency_key.strip() if idempotency_key else None
    if key == "":
        raise Problem("The Idempotency-Key header is empty; send a unique string or omit it.")
    return key


async def request_hash(request: Request) -> str:
    return _canonical_hash(request.method, request.url.path, await request.body())


async def open_idempotency(request: Request, session: Any, key: str | None) -> Idempotency:
    """The request's idempotency in `session`'s transaction: raises IdempotentReplay for a retry of a
    completed request and Conflict for a key reused with another request."""
    caller = getattr(request.state, "caller", None)
    if caller is None:  # pragma: no cover - a handler declared the dependencies in the wrong order
        raise RuntimeError("declare the caller dependency before IdempotencyDep")
    method, path = request.method, request.url.path
    ttl = request.app.state.settings.idempotency_ttl_hours
    if key is None:  # nothing to remember: do not read and hash a possibly large body
        return Idempotency(session, workspace_id=caller.workspace_id, key=None, method=method, path=path,
                           request_hash="", ttl_hours=ttl)  # fmt: skip
    digest = await request_hash(request)
    row = (await session.execute(_LOOKUP, {"w": caller.workspace_id, "k": key, "ttl": ttl})).first()
    if row is not None:
        if (row.method, row.path) != (method, path):
            raise Conflict(
                f"Idempotency-Key {key!r} was already used for {row.method} {row.path}; use a new key for this request."
            )
        if row.request_hash != digest:
            raise Conflict(
                f"Idempotency-Key {key!r} was already used with a different request body; "
                "use a new key for a different request."
            )
        raise IdempotentReplay(row.status_code, row.response_body)
    return Idempotency(session, workspace_id=caller.workspace_id, key=key, method=method, path=path,
                       request_hash=digest, ttl_hours=ttl)  # fmt: skip


async def _idempotency(
    request: Request, session: SessionDep, idempotency_key: IdempotencyKeyHeader = None
) -> Idempotency:
    return await open_idempotency(request, session, clean_key(idempotency_key))


IdempotencyDep = Annotated[Idempotency, Depends(_idempotency)]
