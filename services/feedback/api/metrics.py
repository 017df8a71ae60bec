"""NPS, CSAT and CES with n and 95 % intervals, grouped, filtered and compared across periods."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import Query
from sqlalchemy.ext.asyncio import AsyncSession

from services.common import stats
from services.common.consumer import as_of
from services.common.db import SessionDep
from services.common.errors import Unprocessable
from services.common.timestamps import TimeQuery
from services.feedback.api._deps import Reader, make_router
from services.feedback.consumers import PROJECTIONS
from services.feedback.models import Channel, Comparison, MetricGroup, MetricResult, MetricValue
from services.feedback.store.metrics import Filter, MetricName, aggregate, choose_level, parse_group_by

router = make_router()

METHODS = {
    "nps": "NPS = 100 × (promoters − detractors) / n; 95 % adjusted-Wald interval (Rocks 2016), clipped to ±100",
    "csat": "CSAT = % of answers 4–5 on 1–5; 95 % Wilson score interval",
    "ces": "CES = mean on 1–7; 95 % Student t interval",
}


def _estimate(metric: MetricName, counts: dict[str, Any]) -> tuple[stats.Estimate, dict[str, Any]]:
    n = int(counts.get("n") or 0)
    if metric == "nps":
        p, pa, d = (int(counts.get(k) or 0) for k in ("promoters", "passives", "detractors"))
        est, adjusted = stats.nps(p, pa, d)
        return est, {"adjusted": adjusted, "promoters": p, "passives": pa, "detractors": d}
    if metric == "csat":
        satisfied = int(counts.get("satisfied") or 0)
        return stats.csat(satisfied, n), {"satisfied": satisfied}
    return stats.ces(n, float(counts.get("total") or 0), float(counts.get("total_sq") or 0)), {}


def _value(metric: MetricName, counts: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    est, extra = _estimate(metric, counts)
    out: dict[str, Any] = {
        "n": est.n,
        "value": est.value,
        "interval_low": est.low,
        "interval_high": est.high,
        **extra,
    }
    if previous is not None:
        prev_est, prev_extra = _estimate(metric, previous)
        diff = stats.compare(est, prev_est)
        if diff is not None:
            out["comparison"] = Comparison(
                previous=MetricValue(
                    n=prev_est.n,
                    value=prev_est.value,
                    interval_low=prev_est.low,
                    interval_high=prev_est.high,
                    **prev_extra,
                ),
                difference=diff.difference,
                interval_low=diff.low,
                interval_high=diff.high,
                p_value=diff.p_value,
                statistic=diff.statistic,
                method=diff.method,
            )
    return out


async def _metric(
    metric: MetricName,
    caller_workspace: str,
    session: AsyncSession,
    *,
    survey: list[UUID] | None,
    journey: list[str] | None,
    stage: list[str] | None,
    touchpoint: list[str] | None,
    channel: list[Channel] | None,
    metadata: list[str] | None,
    since: datetime | None,
    until: datetime | None,
    compare_since: datetime | None,
    compare_until: datetime | None,
    group_by: list[str] | None,
    source: Literal["auto", "raw"],
) -> MetricResult:
    meta: dict[str, str] = {}
    for item in metadata or []:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise Unprocessable(
                f"metadata filter {item!r} is not key:value.", errors=[{"field": "metadata", "message": "key:value"}]
            )
        meta[key] = value
    for a, b, name in ((since, until, "since"), (compare_since, compare_until, "compare_since")):
        if a is not None and b is not None and a >= b:
            end = name.replace("since", "until")
            raise Unprocessable(
                f"{name} must be before {end}: the period is empty.",
                errors=[{"field": name, "message": f"must be before {end}"}],
            )
    if (compare_since is None) != (compare_until is None):
        raise Unprocessable(
            "A comparison period needs both compare_since and compare_until.",
            errors=[{"field": "compare_since" if compare_since is None else "compare_until", "message": "set both"}],
        )
    dims = parse_group_by(group_by or [])
    base = Filter(
        surveys=survey or [],
        journeys=journey or [],
        stages=stage or [],
        touchpoints=touchpoint or [],
        channels=[c.value for c in channel or []],
        metadata=meta,
        since=since,
        until=until,
    )
    periods = [(base.since, base.until)]
    if compare_since is not None:
        periods.append((compare_since, compare_until))
    level = choose_level(base, dims, *periods) if source == "auto" else "raw"
    # Before the data: the projection commits its counts with its as_of, so what is read after holds at least this.
    if level == "raw":
        complete_at: datetime | None = datetime.now(UTC)
    else:
        complete_at = await as_of(session, consumer=PROJECTIONS, workspace_id=caller_workspace)
    overall, groups = await aggregate(
        session, workspace_id=caller_workspace, metric=metric, flt=base, group_by=dims, level=level
    )
    prev_overall: dict[str, Any] | None = None
    prev_groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    if compare_since is not None:
        prev = Filter(**{**base.__dict__, "since": compare_since, "until": compare_until})
        prev_overall, pg = await aggregate(
            session, workspace_id=caller_workspace, metric=metric, flt=prev, group_by=dims, level=level
        )
        prev_groups = {tuple(g["group"].values()): g for g in pg}
    empty: dict[str, Any] = {"n": 0}
    return MetricResult(
        metric=metric,
        method=METHODS[metric],
        source="raw" if level == "raw" else "projection",
        rollup_level=None if level == "raw" else level,
        window={"since": since, "until": until},
        compared_window={"since": compare_since, "until": compare_until} if compare_since else None,
        overall=MetricValue(**_value(metric, overall, prev_overall)),
        groups=[
            MetricGroup(
                group=g["group"],
                **_value(
                    metric,
                    g,
                    prev_groups.get(tuple(g["group"].values()), empty) if compare_since is not None else None,
                ),
            )
            for g in groups
        ],
        as_of=complete_at,
        computed_at=datetime.now(UTC),
    )


Surveys = Annotated[list[UUID] | None, Query(alias="survey", max_length=100, description="Survey ids (repeatable).")]
Journeys = Annotated[list[str] | None, Query(alias="journey", max_length=100, description="Journey keys.")]
Stages = Annotated[list[str] | None, Query(alias="stage", max_length=100, description="Stage keys.")]
Touchpoints = Annotated[list[str] | None, Query(alias="touchpoint", max_length=500, description="Touchpoint keys.")]
Channels = Annotated[list[Channel] | None, Query(alias="channel", max_length=20)]
Metadata = Annotated[
    list[str] | None, Query(max_length=20, description="Metadata filter `key:value` (repeatable; all must match).")
]
Since = Annotated[TimeQuery | None, Query(description="submitted_at ≥ this (UTC if no zone).")]
Until = Annotated[TimeQuery | None, Query(description="submitted_at < this (UTC if no zone).")]
CompareSince = Annotated[TimeQuery | None, Query(description="Start of the period to compare with (inclusive).")]
CompareUntil = Annotated[TimeQuery | None, Query(description="End of the period to compare with (exclusive).")]
GroupBy = Annotated[
    list[str] | None,
    Query(
        max_length=4,
        description="survey, journey, stage, touchpoint, channel, day, week, month or metadata.<key> (repeatable).",
    ),
]
Source = Annotated[
    Literal["auto", "raw"], Query(description="raw: always scan the responses (to check the rollup projection).")
]


def _route(metric: MetricName, summary: str) -> None:
    async def handler(
        caller: Reader,
        session: SessionDep,
        survey: Surveys = None,
        journey: Journeys = None,
        stage: Stages = None,
        touchpoint: Touchpoints = None,
        channel: Channels = None,
        metadata: Metadata = None,
        since: Since = None,
        until: Until = None,
        compare_since: CompareSince = None,
        compare_until: CompareUntil = None,
        group_by: GroupBy = None,
        source: Source = "auto",
    ) -> MetricResult:
        return await _metric(
            metric,
            caller.workspace_id,
            session,
            survey=survey,
            journey=journey,
            stage=stage,
            touchpoint=touchpoint,
            channel=channel,
            metadata=metadata,
            since=since,
            until=until,
            compare_since=compare_since,
            compare_until=compare_until,
            group_by=group_by,
            source=source,
        )

    handler.__name__ = f"get_{metric}"
    handler.__doc__ = summary
    router.add_api_route(f"/metrics/{metric}", handler, methods=["GET"], tags=["metrics"], response_model=MetricResult)


_route("nps", "Net Promoter Score across all matching surveys, with n and its adjusted-Wald interval.")
_route("csat", "Customer satisfaction (% of 4–5), with n and its Wilson interval.")
_route("ces", "Customer effort (mean 1–7), with n and its t interval.")
