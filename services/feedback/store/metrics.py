"""NPS / CSAT / CES aggregates, set-based: from the rollup when the filter allows, else the raw table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any, Literal
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.errors import Unprocessable

MetricName = Literal["nps", "csat", "ces"]
PLAIN_DIMENSIONS = ("survey", "journey", "stage", "touchpoint", "channel", "day", "week", "month")
MAX_GROUP_BY = 4


@dataclass
class Filter:
    surveys: list[UUID] = field(default_factory=list)
    journeys: list[str] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)
    touchpoints: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    since: datetime | None = None
    until: datetime | None = None


def parse_group_by(values: list[str]) -> list[str]:
    out = []
    for v in values:
        if v not in PLAIN_DIMENSIONS and not (v.startswith("metadata.") and len(v) > len("metadata.")):
            raise Unprocessable(
                f"Cannot group by {v!r}; use {', '.join(PLAIN_DIMENSIONS)} or metadata.<key>.",
                errors=[{"field": "group_by", "message": f"unknown dimension {v!r}"}],
            )
        if v not in out:
            out.append(v)
    if len(out) > MAX_GROUP_BY:
        raise Unprocessable(
            f"Group by at most {MAX_GROUP_BY} dimensions.", errors=[{"field": "group_by", "message": "too many"}]
        )
    return out


def _whole_day(t: datetime | None) -> bool:
    return t is None or t.astimezone(UTC).time() == time(0)


def _month_start(t: datetime | None) -> bool:
    return t is None or (_whole_day(t) and t.astimezone(UTC).day == 1)


Level = Literal["month", "day", "raw"]


def choose_level(flt: Filter, group_by: list[str], *periods: tuple[datetime | None, datetime | None]) -> Level:
    """The coarsest table that answers exactly: monthly rollup, daily rollup, or the response table."""
    if flt.channels or flt.metadata:
        return "raw"
    if any(g == "channel" or g.startswith("metadata.") for g in group_by):
        return "raw"
    if not all(_whole_day(a) and _whole_day(b) for a, b in periods):
        return "raw"
    if any(g in ("day", "week") for g in group_by):
        return "day"
    return "month" if all(_month_start(a) and _month_start(b) for a, b in periods) else "day"


_AGG_RAW = {
    "nps": "count(nps) AS n, count(*) FILTER (WHERE nps >= 9) AS promoters, "
    "count(*) FILTER (WHERE nps BETWEEN 7 AND 8) AS passives, count(*) FILTER (WHERE nps <= 6) AS detractors",
    "csat": "count(csat) AS n, count(*) FILTER (WHERE csat >= 4) AS satisfied",
    "ces": "count(ces) AS n, coalesce(sum(ces), 0) AS total, coalesce(sum(ces * ces), 0) AS total_sq",
}
_AGG_ROLLUP = {
    "nps": "sum(nps_n) AS n, sum(promoters) AS promoters, sum(passives) AS passives, sum(detractors) AS detractors",
    "csat": "sum(csat_n) AS n, sum(csat_satisfied) AS satisfied",
    "ces": "sum(ces_n) AS n, coalesce(sum(ces_sum), 0) AS total, coalesce(sum(ces_sumsq), 0) AS total_sq",
}
_HAVING = {"nps": "nps", "csat": "csat", "ces": "ces"}


def _dimension(dim: str, *, level: Level, params: dict[str, Any], i: int) -> str:
    rollup = level != "raw"
    day = {"day": "day", "month": "month", "raw": "(submitted_at AT TIME ZONE 'UTC')"}[level]
    key = (lambda c: f"nullif({c}, '')") if rollup else (lambda c: c)
    if dim == "survey":
        return "survey_id::text"
    if dim in ("journey", "stage", "touchpoint"):
        return key(f"{dim}_key")
    if dim == "channel":
        return "channel"
    if dim in ("day", "week", "month"):
        return f"to_char(date_trunc('{dim}', {day}), 'YYYY-MM-DD')"
    params[f"g{i}"] = dim.removeprefix("metadata.")
    return f"metadata ->> CAST(:g{i} AS text)"


async def aggregate(
    session: AsyncSession,
    *,
    workspace_id: str,
    metric: MetricName,
    flt: Filter,
    group_by: list[str],
    level: Level,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(overall counts, counts per group) for one period."""
    params: dict[str, Any] = {"w": workspace_id}
    where = ["workspace_id = :w"]
    for name, column, values in (
        ("surveys", "survey_id", flt.surveys),
        ("journeys", "journey_key", flt.journeys),
        ("stages", "stage_key", flt.stages),
        ("touchpoints", "touchpoint_key", flt.touchpoints),
        ("channels", "channel", flt.channels),
    ):
        if values:
            params[name] = values
            where.append(f"{column} = ANY(:{name})")
    for i, (k, v) in enumerate(flt.metadata.items()):
        params[f"mk{i}"], params[f"mv{i}"] = k, v
        where.append(f"metadata ->> CAST(:mk{i} AS text) = :mv{i}")
    if level != "raw":
        table, agg = f"response_rollup{'_month' if level == 'month' else ''}", _AGG_ROLLUP[metric]
        if flt.since is not None:
            params["since"] = flt.since.astimezone(UTC).date()
            where.append(f"{level} >= :since")
        if flt.until is not None:
            params["until"] = flt.until.astimezone(UTC).date()
            where.append(f"{level} < :until")
    else:
        table, agg = "response", _AGG_RAW[metric]
        where.append(f"{_HAVING[metric]} IS NOT NULL")
        if flt.since is not None:
            params["since"] = flt.since
            where.append("submitted_at >= :since")
        if flt.until is not None:
            params["until"] = flt.until
            where.append("submitted_at < :until")
    dims = [_dimension(d, level=level, params=params, i=i) for i, d in enumerate(group_by)]
    where_sql = " AND ".join(where)
    if dims:
        inner = ", ".join(f"{d} AS d{i}" for i, d in enumerate(dims))
        names = ", ".join(f"d{i}" for i in range(len(dims)))
        sql = (
            f"SELECT {names}, {agg} FROM (SELECT {inner}, * FROM {table} WHERE {where_sql}) t "
            f"GROUP BY {names} ORDER BY {names}"
        )
    else:
        sql = f"SELECT {agg} FROM {table} WHERE {where_sql}"
    rows = (await session.execute(sa.text(sql), params)).all()
    overall: dict[str, Any] = {"n": 0}
    groups: list[dict[str, Any]] = []
    if not dims:
        overall = dict(rows[0]._mapping)
        return overall, groups
    # Every row is in exactly one group and the aggregates are counts and sums, so the overall
    # value is the sum of the groups (cheaper than GROUPING SETS).
    for row in rows:
        data = dict(row._mapping)
        group = {name: data.pop(f"d{i}") for i, name in enumerate(group_by)}
        for key, value in data.items():
            overall[key] = overall.get(key, 0) + (value or 0)
        if data["n"]:
            groups.append({"group": group, **data})
    return overall, groups
