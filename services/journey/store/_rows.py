"""Helpers shared by the store modules: workspace-scoped get, insert and update (which bumps the
row's version: every change of an aggregate increases it, and its event carries it)."""

from __future__ import annotations

from typing import Any, TypeVar
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.errors import Conflict, NotFound, constraint_of
from services.journey.models import Journey, Persona, Touchpoint

RowT = TypeVar("RowT", Persona, Journey, Touchpoint)


async def get_scoped(
    session: AsyncSession, model: type[RowT], *, workspace_id: str, id: UUID, what: str, lock: bool = False
) -> RowT:
    """The row; `lock`: FOR UPDATE, so a delete's event version (last + 1) cannot be overtaken."""
    stmt = sa.select(model).where(model.id == id, model.workspace_id == workspace_id)  # type: ignore[arg-type]
    row = (await session.execute(stmt.with_for_update() if lock else stmt)).scalar_one_or_none()
    if row is None:  # another workspace's object is "not found" too: its existence is not revealed
        raise NotFound(f"No {what} with id {id} in this workspace.")
    return row


async def insert_row(session: AsyncSession, row: Any, *, what: str, key: str) -> None:
    session.add(row)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise duplicate_or_reraise(exc, what=what, key=key) from None


def duplicate_or_reraise(exc: IntegrityError, *, what: str, key: str) -> Exception:
    constraint = constraint_of(exc) or ""
    if constraint.startswith("uq_") and constraint.endswith("_key"):
        return Conflict(f"A {what} with key {key!r} already exists in this workspace.", constraint=constraint)
    return exc


async def update_row(session: AsyncSession, row: Any, changes: dict[str, Any], *, what: str) -> None:
    for field, value in changes.items():
        setattr(row, field, value)
    if hasattr(row, "updated_at"):
        row.updated_at = sa.func.now()
    if hasattr(row, "version"):
        row.version = type(row).version + 1  # in the UPDATE itself: concurrent changes each count
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise duplicate_or_reraise(exc, what=what, key=str(changes.get("key"))) from None
    await session.refresh(row)


def text_filter(column: Any, q: str | None) -> Any:
    if not q:
        return sa.true()
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.ilike(f"%{escaped}%", escape="\\")
