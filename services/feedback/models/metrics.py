"""Shapes of the metric endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from services.feedback.models._base import Shape


class Comparison(Shape):
    previous: MetricValue
    difference: float = Field(description="current − previous (adjusted NPS, CSAT share, or CES mean).")
    interval_low: float
    interval_high: float
    p_value: float
    statistic: float
    method: str


class MetricValue(Shape):
    n: int = Field(description="Responses that answered the metric's question.")
    value: float | None = Field(description="NPS (−100..100), CSAT (% of 4–5) or CES (mean 1–7); null when n = 0.")
    interval_low: float | None
    interval_high: float | None
    adjusted: float | None = Field(default=None, description="NPS only: the adjusted-Wald point estimate.")
    promoters: int | None = None
    passives: int | None = None
    detractors: int | None = None
    satisfied: int | None = Field(default=None, description="CSAT only: answers of 4 or 5.")
    comparison: Comparison | None = None


class MetricGroup(MetricValue):
    group: dict[str, str | None]


class MetricResult(Shape):
    metric: Literal["nps", "csat", "ces"]
    method: str
    level: float = 0.95
    source: Literal["projection", "raw"] = Field(
        description="projection: the rollups projection answered (built from the response events, complete up to "
        "`as_of`); raw: the response table was scanned (channel or metadata filters/groups, a time range not on "
        "whole UTC days, or source=raw)."
    )
    rollup_level: Literal["month", "day"] | None = Field(
        description="Which rollup answered: month (whole UTC months, no day/week grouping) or day."
    )
    window: dict[str, datetime | None] = Field(description="`since` (inclusive) and `until` (exclusive), UTC.")
    compared_window: dict[str, datetime | None] | None = Field(
        description="The comparison period's `since` and `until`; null without a comparison."
    )
    overall: MetricValue
    groups: list[MetricGroup]
    as_of: datetime | None = Field(
        description="The answer holds every response stored up to this time: from the rollup, the time of the last "
        "event its projection applied for the workspace (null: none yet); from the response table, the read time."
    )
    computed_at: datetime


Comparison.model_rebuild()
