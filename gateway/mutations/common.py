"""What every mutation shares: a REST body from an input, the create under an idempotency key, and
forgetting the journeys a request has read once it has written one."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Annotated, Any

import orjson
import strawberry
from strawberry.types import Info

from gateway.schema import Context

UNSET: Any = strawberry.UNSET
IdempotencyKey = Annotated[
    str | None,
    strawberry.argument(
        description="Any unique string; the same key and arguments again return the first answer. Omitted: "
        "derived from you, the mutation and its arguments (identical creates while the key is kept, 48 h, are one)."
    ),
]


def as_body(value: Any) -> Any:
    """An input as the REST body: the fields by their (snake_case) Python names; fields left out stay out,
    so the service's defaults apply and a PATCH changes only what was sent (`null` clears)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_body(v) for f in dataclasses.fields(value) if (v := getattr(value, f.name)) is not UNSET}
    if isinstance(value, list):
        return [as_body(v) for v in value]
    return value


def derived_key(context: Context, mutation: str, path: str, body: Any) -> str:
    """The same caller (workspace and subject, not the token: a refreshed token retries too) sending the
    same mutation with the same arguments: the same key."""
    caller = context.caller
    canonical = orjson.dumps([caller.workspace_id, caller.subject, mutation, path, body], option=orjson.OPT_SORT_KEYS)
    return "gateway-" + hashlib.sha256(canonical).hexdigest()


async def create(
    info: Info[Context, None], mutation: str, service: str, path: str, data: Any, key: str | None, derive: bool = True
) -> Any:
    """POST `data` under the client's key, or (`derive`) one derived from the caller and the arguments."""
    body = as_body(data)
    if key is None and derive:
        key = derived_key(info.context, mutation, path, body)
    return await info.context.send("POST", service, path, body, idempotency_key=key)


def journey_changed(info: Info[Context, None]) -> None:
    """Forget the journeys this request has read: a later field reads their maps again. (All of them:
    strawberry's `DataLoader.clear(key)` raises KeyError for a key it has not loaded.)"""
    info.context.maps.clear_all()
    info.context.scores.clear_all()
