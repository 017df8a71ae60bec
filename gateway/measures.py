"""The measures the views carry, as the services answer them: each with its n and interval, and the
method and moment it was computed where the service gives them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import strawberry


def when(text: str | None) -> datetime | None:
    """A service's ISO date-time (or its null)."""
    return datetime.fromisoformat(text) if text else None


@strawberry.type(description="A measure with its sample size and 95 % interval.")
class Estimate:
    value: float | None
    low: float | None
    high: float | None
    n: int


@strawberry.type(description="NPS, CSAT or CES of the answers given there (feedback service), with n and interval.")
class Metric:
    value: float | None
    low: float | None
    high: float | None
    n: int
    method: str
    as_of: datetime | None

    @classmethod
    def of(cls, counted: dict[str, Any], method: str, as_of: datetime | None) -> Metric:
        return cls(
            value=counted["value"],
            low=counted["interval_low"],
            high=counted["interval_high"],
            n=counted["n"],
            method=method,
            as_of=as_of,
        )


@dataclass(frozen=True, slots=True)
class JourneyMetrics:
    """One metric of a journey's touchpoints, as one grouped read answered it."""

    groups: dict[str, dict[str, Any]]  # touchpoint key -> the service's group
    method: str
    as_of: datetime | None

    def of(self, touchpoint_key: str) -> Metric:
        return Metric.of(self.groups.get(touchpoint_key, NO_ANSWERS), self.method, self.as_of)


NO_ANSWERS = {"n": 0, "value": None, "interval_low": None, "interval_high": None}


@strawberry.type(description="A touchpoint's scores in one journey (scoring service, latest snapshot).")
class TouchpointScore:
    reach: float
    reach_n: int
    relevance: float | None
    relevance_low: float | None
    relevance_high: float | None
    relevance_significant: bool
    quadrant: str
    budget_burner: bool
    moment_of_truth: str
    pain_point: bool
    csat: Estimate
    ces: Estimate

    @classmethod
    def of(cls, t: dict[str, Any]) -> TouchpointScore:
        return cls(
            reach=t["reach"],
            reach_n=t["reach_n"],
            relevance=t["relevance"],
            relevance_low=t["relevance_low"],
            relevance_high=t["relevance_high"],
            relevance_significant=t["relevance_significant"],
            quadrant=t["quadrant"],
            budget_burner=t["budget_burner"],
            moment_of_truth=t["moment_of_truth"],
            pain_point=t["pain_point"]["pain_point"],
            csat=Estimate(**t["csat"]),
            ces=Estimate(**t["ces"]),
        )


@strawberry.type(description="The journey's health 0-100 with its interval (scoring service).")
class Health:
    score: float | None
    low: float | None
    high: float | None
    n: int
    method: str
    as_of: datetime | None
