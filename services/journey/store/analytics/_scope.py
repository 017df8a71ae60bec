"""What every journey view shares: the journey's stages, the time range, and which events count.

An interaction counts for a journey when its touchpoint is placed in one of the journey's steps and
it is not tagged with another journey (`journey_id` null or this journey).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.errors import NotFound, Unprocessable
from services.journey.models import StageRef


@dataclass(frozen=True, slots=True)
class JourneyScope:
    id: UUID
    persona_id: UUID | None
    stages: list[StageRef]


async def journey_scope(session: AsyncSession, *, workspace_id: str, journey_id: UUID) -> JourneyScope:
    # These statements aggregate up to millions of rows: JIT compilation costs more than it saves
    # at this size, and the default 4 MB work_mem sends their sorts and hashes to disk.
    await session.execute(sa.text("SET LOCAL jit = off"))
    await session.execute(sa.text("SET LOCAL work_mem = '64MB'"))
    persona = (
        await session.execute(
            sa.text("SELECT persona_id FROM journey WHERE id = :j AND workspace_id = :w"),
            {"j": journey_id, "w": workspace_id},
        )
    ).first()
    if persona is None:
        raise NotFound(f"No journey with id {journey_id} in this workspace.")
    rows = await session.execute(
        sa.text(
            "SELECT id, key, name, position FROM stage WHERE journey_id = :j AND workspace_id = :w ORDER BY position"
        ),
        {"j": journey_id, "w": workspace_id},
    )
    return JourneyScope(journey_id, persona.persona_id, [StageRef.model_validate(r._mapping) for r in rows])


def time_range(since: datetime | None, until: datetime | None) -> tuple[datetime | None, datetime | None]:
    """The range, checked: its bounds are in UTC and within the time bounds already (TimeQuery)."""
    if since is not None and until is not None and since >= until:
        raise Unprocessable(
            "since must be before until.", errors=[{"field": "query.since", "message": "not before until"}]
        )
    return since, until


def event_filter(alias: str, since: datetime | None, until: datetime | None, params: dict[str, Any]) -> str:
    """SQL conditions for a journey's events in [since, until); fills params."""
    sql = f" AND {alias}.workspace_id = :w AND ({alias}.journey_id IS NULL OR {alias}.journey_id = :j)"
    bind_range(params, since, until)
    if since is not None:
        sql += f" AND {alias}.occurred_at >= :since"
    if until is not None:
        sql += f" AND {alias}.occurred_at < :until"
    return sql


def bind_range(params: dict[str, Any], since: datetime | None, until: datetime | None) -> None:
    """`:since` and `:until` for the statements that use them (set bounds only)."""
    params.update({k: v for k, v in (("since", since), ("until", until)) if v is not None})


def count_before(t: str, times: str) -> str:
    """SQL: how many elements of the sorted timestamptz array `times` are before `t` — a binary
    search. width_bucket(x, times) counts the elements <= x; timestamps have microsecond
    resolution, so those < t are those <= t - 1 µs. Then `times[count_before(t) + 1]` is the first
    at or after t (null if none) and `times[1 : count_before(t)]` those before it."""
    return f"width_bucket({t} - interval '1 microsecond', {times})"
