"""Cursor (keyset) pagination over time-ordered UUIDv7 keys."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Generic, TypeVar
from uuid import UUID

from fastapi import Query
from pydantic import BaseModel, Field
from sqlalchemy import Select

from services.common.errors import Unprocessable

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null on the last page.")


def encode_cursor(last_id: UUID) -> str:
    return base64.urlsafe_b64encode(last_id.bytes).decode().rstrip("=")


def not_a_cursor(cursor: str) -> Unprocessable:
    return Unprocessable(
        f"The cursor {cursor[:40]!r} is not one this API issued; start again without a cursor.",
        errors=[{"field": "query.cursor", "message": "not a cursor of this API"}],
    )


def cursor_bytes(cursor: str, size: int) -> bytes:
    """The `size` bytes an unpadded base64url cursor of this API holds; a 422 for any other text."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise not_a_cursor(cursor) from None
    if len(raw) != size:
        raise not_a_cursor(cursor)
    return raw


def decode_cursor(cursor: str) -> UUID:
    return UUID(bytes=cursor_bytes(cursor, 16))


def cursor_pattern(size: int) -> str:
    """What a cursor of `size` bytes looks like: unpadded base64url, ⌈size · 4 / 3⌉ characters."""
    return f"^[A-Za-z0-9_-]{{{-(-size * 4 // 3)}}}$"


CURSOR_HELP = "`next_cursor` of the previous page."
CursorQuery = Annotated[str | None, Query(pattern=cursor_pattern(16), description=CURSOR_HELP)]  # a UUID
LimitQuery = Annotated[int, Query(ge=1, le=500, description="Page size (1-500).")]


def keyset(stmt: Select[Any], id_column: Any, *, cursor: str | None, limit: int) -> Select[Any]:
    """Order by the UUIDv7 key (creation order) and fetch one row more than the page."""
    if cursor is not None:
        stmt = stmt.where(id_column > decode_cursor(cursor))
    return stmt.order_by(id_column).limit(limit + 1)


def page_of(rows: list[T], *, limit: int, id_of: Any) -> Page[T]:
    if len(rows) > limit:
        rows = rows[:limit]
        return Page[T](items=rows, next_cursor=encode_cursor(id_of(rows[-1])))
    return Page[T](items=rows, next_cursor=None)
