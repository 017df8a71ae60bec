"""The metric formulas of DESIGN.md §4, shared by feedback and scoring: NPS (adjusted Wald, Rocks
2016), CSAT (Wilson), CES (t interval), and two-group comparisons.
Pure functions of counts and sums, so rollups and raw scans share them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from scipy import stats as sps  # type: ignore[import-untyped]

LEVEL = 0.95
Z = NormalDist().inv_cdf(0.5 + LEVEL / 2)  # 1.959964


@dataclass(frozen=True, slots=True)
class Estimate:
    n: int
    value: float | None  # the reported score
    low: float | None
    high: float | None
    se: float | None  # standard error of the value the interval is built on
    centre: float | None  # the value comparisons use (adjusted NPS; CSAT share; CES mean)
    df: float | None = None  # degrees of freedom when a t distribution applies (CES)


def nps(promoters: int, passives: int, detractors: int) -> tuple[Estimate, float | None]:
    """(estimate, adjusted NPS). Value is the plain NPS; the interval is the adjusted Wald interval:
    add 0.75 detractors, 1.5 passives, 0.75 promoters, compute on n + 3, clip to [-100, 100]."""
    n = promoters + passives + detractors
    if n == 0:
        return Estimate(0, None, None, None, None, None), None
    raw = 100.0 * (promoters - detractors) / n
    m = n + 3
    p = (promoters + 0.75) / m
    d = (detractors + 0.75) / m
    adjusted = p - d
    se = math.sqrt((p + d - adjusted**2) / m)
    low = max(-100.0, 100 * (adjusted - Z * se))
    high = min(100.0, 100 * (adjusted + Z * se))
    return Estimate(n, raw, low, high, 100 * se, 100 * adjusted), 100 * adjusted


def csat(satisfied: int, n: int) -> Estimate:
    """Share of 4-5 answers in percent with the Wilson score interval."""
    if n == 0:
        return Estimate(0, None, None, None, None, None)
    p = satisfied / n
    denom = 1 + Z**2 / n
    centre = (p + Z**2 / (2 * n)) / denom
    half = Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n * n)) / denom
    se = math.sqrt(p * (1 - p) / n)
    return Estimate(n, 100 * p, 100 * (centre - half), 100 * (centre + half), 100 * se, 100 * p)


def ces(n: int, total: float, total_sq: float) -> Estimate:
    """Mean effort (1-7) with a Student t interval; no interval for n < 2."""
    if n == 0:
        return Estimate(0, None, None, None, None, None)
    mean = total / n
    if n < 2:
        return Estimate(n, mean, None, None, None, mean)
    var = max(0.0, (total_sq - n * mean * mean) / (n - 1))
    se = math.sqrt(var / n)
    t = float(sps.t.ppf(0.5 + LEVEL / 2, n - 1))
    return Estimate(n, mean, mean - t * se, mean + t * se, se, mean, df=n - 1)


@dataclass(frozen=True, slots=True)
class Difference:
    difference: float
    low: float
    high: float
    p_value: float
    statistic: float
    method: str


def compare(current: Estimate, previous: Estimate) -> Difference | None:
    """current − previous with its interval and two-sided p-value: z = Δ / sqrt(se₁² + se₂²), or Welch's t
    when both estimates carry degrees of freedom (CES)."""
    if current.centre is None or previous.centre is None or current.se is None or previous.se is None:
        return None
    delta = current.centre - previous.centre
    se = math.sqrt(current.se**2 + previous.se**2)
    if se == 0:
        return None
    stat = delta / se
    if current.df is not None and previous.df is not None:
        # Welch-Satterthwaite degrees of freedom
        a, b = current.se**2, previous.se**2
        df = (a + b) ** 2 / (a * a / current.df + b * b / previous.df)
        q = float(sps.t.ppf(0.5 + LEVEL / 2, df))
        p = float(2 * sps.t.sf(abs(stat), df))
        return Difference(delta, delta - q * se, delta + q * se, p, stat, "Welch t")
    p = 2 * (1 - NormalDist().cdf(abs(stat)))
    return Difference(delta, delta - Z * se, delta + Z * se, p, stat, "z = Δ / sqrt(se₁² + se₂²)")
