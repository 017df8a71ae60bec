"""Helpers shared by the store modules."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.errors import Conflict


async def insert_row(session: AsyncSession, row: Any, *, what: str, key: str) -> None:
    session.add(row)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        constraint = getattr(exc.orig, "constraint_name", None) or str(exc.orig)
        if "uq_" in constraint:
            raise Conflict(f"A {what} with {key} already exists in this workspace.", constraint=constraint) from None
        raise
