"""The decisions built on relevance and reach (DESIGN §4): portfolio quadrants, budget burners with the
failure-impact check, measured vs designed moments of truth, pain points and cross-journey priority.

Inputs are per-touchpoint arrays of one journey computed elsewhere; NaN means "no data". Relevance is an
effect measure, so only its magnitude is used here. The metric formulas come from the kit
(`services.common.stats`); the loops over touchpoints call them once per touchpoint (p ≤ ~200)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special  # type: ignore[import-untyped]

from services.common import stats

QUADRANTS = ("core", "lever", "hygiene", "reconsider")
ALPHA = 1 - stats.LEVEL


def _floats(name: str, x: ArrayLike, p: int | None = None) -> NDArray[np.float64]:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or (p is not None and a.shape[0] != p):
        raise ValueError(f"{name} must be a vector of {p if p is not None else 'n'} values, got shape {a.shape}")
    return a


def _counts(name: str, x: ArrayLike, shape: tuple[int, ...]) -> NDArray[np.int64]:
    a = np.asarray(x)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    if a.size and (not np.all(np.isfinite(a)) or np.any(a < 0) or np.any(a != np.round(a))):
        raise ValueError(f"{name} must hold non-negative whole counts")
    return a.astype(np.int64)


# ---------------------------------------------------------------------------------------------- failure impact


@dataclass(frozen=True, slots=True)
class FailureImpact:
    """Per touchpoint: adjusted NPS of the customers with a bad experience there minus that of the others."""

    difference: NDArray[np.float64]  # adjusted NPS points (bad − others); NaN when not testable
    low: NDArray[np.float64]
    high: NDArray[np.float64]
    p_value: NDArray[np.float64]
    nps_bad: NDArray[np.float64]  # plain NPS of each group, the reported scores
    nps_others: NDArray[np.float64]
    n_bad: NDArray[np.int64]
    n_others: NDArray[np.int64]
    tested: NDArray[np.bool_]  # both groups answered, so the check could run
    damaging: NDArray[np.bool_]  # significantly below (p < .05, difference < 0)
    method: str


def failure_impact(bad: ArrayLike, others: ArrayLike) -> FailureImpact:
    """bad, others: (p, 3) promoters/passives/detractors counts of the customers who had a bad experience at
    the touchpoint (CSAT <= 2 or CES >= 5) vs the other customers who met it. NPS difference (bad − others)
    with interval and p-value via stats.nps + stats.compare; `damaging` when significantly below (p < .05).

    Why: a touchpoint can matter little on average and still hurt badly when it fails (DESIGN §4: check
    before recommending a cut). The comparison is the kit's z = Δ / sqrt(se₁² + se₂²) on the adjusted Wald
    NPS (Rocks 2016), which stays defined for small or one-sided groups."""
    b = np.asarray(bad)
    if b.ndim != 2 or b.shape[1] != 3:
        raise ValueError(f"bad must have shape (p, 3): promoters, passives, detractors; got {b.shape}")
    p = b.shape[0]
    b = _counts("bad", b, (p, 3))
    o = _counts("others", others, (p, 3))
    out = np.full((6, p), np.nan)
    for i in range(p):
        eb, _ = stats.nps(int(b[i, 0]), int(b[i, 1]), int(b[i, 2]))
        eo, _ = stats.nps(int(o[i, 0]), int(o[i, 1]), int(o[i, 2]))
        out[4, i] = math.nan if eb.value is None else eb.value
        out[5, i] = math.nan if eo.value is None else eo.value
        d = stats.compare(eb, eo)
        if d is not None:
            out[0:4, i] = (d.difference, d.low, d.high, d.p_value)
    tested = np.isfinite(out[0])
    damaging = tested & (out[0] < 0) & (out[3] < ALPHA)
    return FailureImpact(
        difference=out[0],
        low=out[1],
        high=out[2],
        p_value=out[3],
        nps_bad=out[4],
        nps_others=out[5],
        n_bad=b.sum(axis=1),
        n_others=o.sum(axis=1),
        tested=tested,
        damaging=damaging,
        method="adjusted Wald NPS (Rocks 2016), bad − others, z = Δ / sqrt(se₁² + se₂²), damaging when p < .05",
    )


# --------------------------------------------------------------------------------------------------- portfolio


@dataclass(frozen=True, slots=True)
class Portfolio:
    quadrant: NDArray[np.str_]  # (p,) one of QUADRANTS, "" without relevance or reach
    relevance_threshold: float
    reach_threshold: float
    cost_threshold: float
    cost_per_relevance: NDArray[np.float64]  # yearly cost ÷ relevance; inf when relevance is 0, NaN without a cost
    budget_burner: NDArray[np.bool_]  # costly, no significant relevance and NO failure damage
    keep_despite_low_relevance: NDArray[np.bool_]  # would be a burner, but the failure-impact check found damage
    burner_order: NDArray[np.intp]  # indices of the burners, highest cost per relevance first
    failure_impact: FailureImpact
    n: int  # touchpoints placed (relevance and reach known)


def _median(x: NDArray[np.float64]) -> float:
    return float(np.median(x)) if x.size else math.nan


def portfolio(
    *,
    relevance: ArrayLike,
    significant: ArrayLike,
    reach: ArrayLike,
    yearly_cost: ArrayLike,
    impact: FailureImpact,
    relevance_threshold: float | None = None,
    reach_threshold: float | None = None,
    cost_threshold: float | None = None,
) -> Portfolio:
    """Place every touchpoint on relevance × reach and name the budget burners (DESIGN §4).

    Thresholds default to the medians over the touchpoints that can be placed (relevance and reach known);
    the cost threshold to the median of the known positive yearly costs. A value *at* a threshold counts as
    high (≥), so with an odd count the median touchpoint itself is high; a relevance or reach of exactly 0
    is never high, so a median of 0 does not turn "no effect" into "high relevance".

    A burner is costly (yearly cost ≥ cost threshold), has no significant relevance (it adds nothing the
    data can measure; a costly touchpoint with a small but real effect is in the low quadrants, not a
    burner) and showed no significant failure damage. When the failure check found damage it is named
    `keep_despite_low_relevance` instead: low average importance can hide high damage. A burner whose
    check could not run (no bad experiences recorded, `failure_impact.tested` False) stays a burner:
    nothing showed damage, but the
    caller should say the check lacked data. Burners are ordered by cost ÷ relevance, the budget each unit
    of relevance consumes."""
    rel = np.abs(_floats("relevance", relevance))
    p = rel.shape[0]
    sig = np.asarray(significant, dtype=np.bool_)
    if sig.shape != (p,):
        raise ValueError(f"significant must be a vector of {p} booleans, got shape {sig.shape}")
    r = _floats("reach", reach, p)
    if np.any(r[np.isfinite(r)] < 0) or np.any(r[np.isfinite(r)] > 1):
        raise ValueError("reach must lie in [0, 1]")
    cost = _floats("yearly_cost", yearly_cost, p)
    if np.any(cost[np.isfinite(cost)] < 0):
        raise ValueError("yearly_cost must not be negative")
    if impact.damaging.shape != (p,):
        raise ValueError(f"impact covers {impact.damaging.shape[0]} touchpoints, expected {p}")

    has_rel = np.isfinite(rel)
    placed = has_rel & np.isfinite(r)
    rel_t = _median(rel[placed]) if relevance_threshold is None else float(relevance_threshold)
    reach_t = _median(r[placed]) if reach_threshold is None else float(reach_threshold)
    with np.errstate(invalid="ignore"):
        high_rel = has_rel & (rel >= rel_t) & (rel > 0)
        high_reach = np.isfinite(r) & (r >= reach_t) & (r > 0)
    quadrant = np.full(p, "", dtype="<U10")
    quadrant[placed & high_rel & high_reach] = "core"
    quadrant[placed & high_rel & ~high_reach] = "lever"
    quadrant[placed & ~high_rel & high_reach] = "hygiene"
    quadrant[placed & ~high_rel & ~high_reach] = "reconsider"

    has_cost = np.isfinite(cost)
    with np.errstate(divide="ignore", invalid="ignore"):
        cpr = np.where(cost == 0, 0.0, cost / rel)  # x/0 → inf for a positive cost; NaN stays NaN
    cpr[~has_cost | ~has_rel] = math.nan
    positive = cost[has_cost & (cost > 0)]
    cost_t = _median(positive) if cost_threshold is None else float(cost_threshold)
    with np.errstate(invalid="ignore"):
        costly = has_cost & (cost > 0) & (cost >= cost_t)
    low_rel = has_rel & ~sig
    candidate = costly & low_rel
    burner = candidate & ~impact.damaging
    idx = np.flatnonzero(burner)
    order = idx[np.argsort(-cpr[idx], kind="stable")]
    return Portfolio(
        quadrant=quadrant,
        relevance_threshold=rel_t,
        reach_threshold=reach_t,
        cost_threshold=cost_t,
        cost_per_relevance=cpr,
        budget_burner=burner,
        keep_despite_low_relevance=candidate & impact.damaging,
        burner_order=order,
        failure_impact=impact,
        n=int(placed.sum()),
    )


# ----------------------------------------------------------------------------------------- moments of truth


@dataclass(frozen=True, slots=True)
class MomentsOfTruth:
    measured: NDArray[np.bool_]  # (p,)
    status: NDArray[np.str_]  # "confirmed", "unconfirmed" (designed, not measured), "undiscovered", ""
    coverage: float  # the share asked for
    achieved: float  # the share of the total relevance the measured set covers
    total_relevance: float
    n: int  # touchpoints with a relevance estimate


def moments_of_truth(
    *, relevance: ArrayLike, significant: ArrayLike, designed: ArrayLike, coverage: float = 0.8
) -> MomentsOfTruth:
    """The smallest set of significant touchpoints whose relevance covers `coverage` of the total relevance
    (DESIGN §4), compared with the designed flags.

    The total is the relevance of every touchpoint with an estimate, significant or not, so "covers 80 %" means
    80 % of everything the journey's touchpoints explain. Taking the largest first gives the smallest set; ties
    go to the lower index. When the significant touchpoints together cover less than asked, all of them are
    measured moments of truth and `achieved` says how much they cover."""
    if not 0 < coverage <= 1:
        raise ValueError("coverage must be a share in (0, 1]")
    rel = np.abs(_floats("relevance", relevance))
    p = rel.shape[0]
    sig = np.asarray(significant, dtype=np.bool_)
    des = np.asarray(designed, dtype=np.bool_)
    if sig.shape != (p,) or des.shape != (p,):
        raise ValueError(f"significant and designed must be vectors of {p} booleans")
    known = np.isfinite(rel)
    total = float(rel[known].sum())
    eligible = np.flatnonzero(known & sig & (rel > 0))
    order = eligible[np.argsort(-rel[eligible], kind="stable")]
    cum = np.cumsum(rel[order])
    measured = np.zeros(p, dtype=np.bool_)
    achieved = 0.0
    if total > 0 and order.size:
        # relative tolerance: a set hitting the target exactly must not miss it by rounding
        reach_target = np.flatnonzero(cum >= coverage * total * (1 - 1e-12))
        k = int(reach_target[0]) + 1 if reach_target.size else order.size
        measured[order[:k]] = True
        achieved = float(cum[k - 1] / total)
    status = np.full(p, "", dtype="<U12")
    status[measured & des] = "confirmed"
    status[~measured & des] = "unconfirmed"
    status[measured & ~des] = "undiscovered"
    return MomentsOfTruth(measured, status, float(coverage), achieved, total, int(known.sum()))


# ---------------------------------------------------------------------------------------------- pain points


@dataclass(frozen=True, slots=True)
class PainPoints:
    pain: NDArray[np.bool_]  # significant relevance and experience significantly below the journey's
    below: NDArray[np.bool_]  # CSAT significantly below the rest of the journey
    csat: NDArray[np.float64]  # percent, NaN without ratings
    csat_rest: NDArray[np.float64]  # the other touchpoints' ratings pooled
    difference: NDArray[np.float64]  # percentage points (touchpoint − rest)
    low: NDArray[np.float64]
    high: NDArray[np.float64]
    p_value: NDArray[np.float64]
    n: NDArray[np.int64]  # ratings at the touchpoint
    n_rest: NDArray[np.int64]
    journey_csat: float
    journey_n: int
    method: str


def pain_points(*, significant: ArrayLike, satisfied: ArrayLike, rated: ArrayLike) -> PainPoints:
    """Pain points: significant relevance and experience significantly below the journey's (DESIGN §4).

    Each touchpoint's CSAT (share of 4-5) is compared with the rest of the journey's ratings, so the two groups
    are independent. Not the kit's Wald comparison (`stats.csat` + `stats.compare`): its standard error is 0
    for a touchpoint whose few ratings are all 1-3, so one bad rating against an 80 % journey would give
    z ≈ −63. Instead a two-proportion test:
    - p-value: the pooled two-proportion z test (the score test of equal proportions), which takes its
      variance from the pooled share and so stays honest for small or one-sided touchpoints (the same single
      bad rating: z ≈ −2.0, borderline; no large-sample test is reliable at n = 1);
    - interval: Newcombe's hybrid score interval for a difference of proportions (Newcombe 1998, method 10),
      built from the kit's Wilson intervals (`stats.csat`);
    - significantly below: p < .05 and a negative difference.
    The two are different constructions and can disagree exactly at the boundary; the decision follows p."""
    sig = np.asarray(significant, dtype=np.bool_)
    if sig.ndim != 1:
        raise ValueError(f"significant must be a vector, got shape {sig.shape}")
    p = sig.shape[0]
    sat = _counts("satisfied", satisfied, (p,))
    n1 = _counts("rated", rated, (p,))
    if np.any(sat > n1):
        raise ValueError("satisfied must not exceed rated")
    sat_all, n_all = int(sat.sum()), int(n1.sum())
    sat2, n2 = sat_all - sat, n_all - n1
    wilson = np.full((4, p), np.nan)  # low1, high1, low2, high2 as shares
    for i in range(p):
        a, b = stats.csat(int(sat[i]), int(n1[i])), stats.csat(int(sat2[i]), int(n2[i]))
        if a.low is not None and a.high is not None and b.low is not None and b.high is not None:
            wilson[:, i] = (a.low / 100, a.high / 100, b.low / 100, b.high / 100)
    ok = (n1 > 0) & (n2 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        p1 = np.where(n1 > 0, sat / n1, np.nan)
        p2 = np.where(n2 > 0, sat2 / n2, np.nan)
        diff = p1 - p2
        low = diff - np.sqrt((p1 - wilson[0]) ** 2 + (wilson[3] - p2) ** 2)
        high = diff + np.sqrt((wilson[1] - p1) ** 2 + (p2 - wilson[2]) ** 2)
        pooled = sat_all / n_all if n_all else math.nan
        se0 = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        z = np.where(ok & (se0 > 0), diff / se0, np.nan)
    pv = np.asarray(special.erfc(np.abs(z) / math.sqrt(2)), dtype=np.float64)  # two-sided normal tail
    # identical groups (se0 = 0 only when every rating agrees) differ by nothing: p = 1, not "untestable"
    pv = np.where(ok & (se0 == 0), 1.0, pv)
    with np.errstate(invalid="ignore"):
        below = ok & (diff < 0) & (pv < ALPHA)
    return PainPoints(
        pain=below & sig,
        below=below,
        csat=100 * p1,
        csat_rest=100 * p2,
        difference=100 * np.where(ok, diff, np.nan),
        low=100 * np.where(ok, low, np.nan),
        high=100 * np.where(ok, high, np.nan),
        p_value=pv,
        n=n1,
        n_rest=n2,
        journey_csat=100 * sat_all / n_all if n_all else math.nan,
        journey_n=n_all,
        method="CSAT vs rest of journey: Newcombe hybrid score interval (method 10), pooled two-proportion z test",
    )


# ---------------------------------------------------------------------------------------- cross-journey priority


@dataclass(frozen=True, slots=True)
class Priority:
    priority: NDArray[np.float64]  # (t,) Σ_j |relevance_tj| · w_j over the journeys with an estimate
    low: NDArray[np.float64]
    high: NDArray[np.float64]
    journeys: NDArray[np.int64]  # journeys contributing to each touchpoint
    weight_covered: NDArray[np.float64]  # Σ w_j over those journeys
    weights: NDArray[np.float64]  # (J,) normalised journey weights
    rank: NDArray[np.intp]  # touchpoint indices, highest priority first
    n: int  # long-format rows used
    method: str


def _magnitude_interval(
    est: NDArray[np.float64], low: NDArray[np.float64], high: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Interval of |effect| from the interval of a signed effect: it touches 0 when the interval spans 0."""
    lo, hi = np.minimum(low, high), np.maximum(low, high)
    spans = (lo <= 0) & (hi >= 0)
    mag_low = np.where(spans, 0.0, np.minimum(np.abs(lo), np.abs(hi)))
    return np.abs(est), mag_low, np.maximum(np.abs(lo), np.abs(hi))


def cross_journey_priority(
    *,
    touchpoint_index: ArrayLike,
    journey_index: ArrayLike,
    relevance: ArrayLike,
    relevance_low: ArrayLike,
    relevance_high: ArrayLike,
    journey_weight: ArrayLike,
    n_touchpoints: int | None = None,
) -> Priority:
    """Priority of a touchpoint = Σ_j |relevance_tj| · w_j over the journeys it serves, w = each journey's volume
    (customers) or value normalised to sum 1 over all journeys given: the global optimum over each owner's
    local one (DESIGN §4). Rows are long format (touchpoint, journey); NaN relevance rows are skipped.

    The interval sums the weighted bounds. For symmetric intervals this is the interval of perfectly correlated
    estimates, and since sd(Σ wX) ≤ Σ w sd(X) (Minkowski) it is conservative whatever the dependence between
    journeys, which share customers and so are not independent."""
    ti = np.asarray(touchpoint_index)
    ji = np.asarray(journey_index)
    if ti.ndim != 1 or ji.shape != ti.shape:
        raise ValueError("touchpoint_index and journey_index must be vectors of the same length")
    if ti.size and (not np.issubdtype(ti.dtype, np.integer) or not np.issubdtype(ji.dtype, np.integer)):
        raise ValueError("touchpoint_index and journey_index must be integers")
    rows = ti.shape[0]
    w = _floats("journey_weight", journey_weight)
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("journey weights must be finite, non-negative and sum to more than 0")
    w = w / w.sum()
    t = n_touchpoints if n_touchpoints is not None else int(ti.max()) + 1 if rows else 0
    if rows and (ti.min() < 0 or ti.max() >= t or ji.min() < 0 or ji.max() >= w.shape[0]):
        raise ValueError("an index is outside the touchpoints or the journeys given")
    key = ti.astype(np.int64) * w.shape[0] + ji
    if np.unique(key).size != rows:
        raise ValueError("a (touchpoint, journey) pair appears more than once")
    est, lo, hi = _magnitude_interval(
        _floats("relevance", relevance, rows),
        _floats("relevance_low", relevance_low, rows),
        _floats("relevance_high", relevance_high, rows),
    )
    use = np.isfinite(est)
    wr = w[ji[use]]
    tu = ti[use]

    def by_touchpoint(x: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.bincount(tu, weights=x, minlength=t).astype(np.float64)

    prio = by_touchpoint(est[use] * wr)
    # a missing bound is unknown, so the touchpoint's interval is too (NaN propagates through the sum)
    low, high = by_touchpoint(lo[use] * wr), by_touchpoint(hi[use] * wr)
    journeys = np.bincount(tu, minlength=t).astype(np.int64)
    covered = by_touchpoint(wr)
    none = journeys == 0
    prio[none], low[none], high[none] = math.nan, math.nan, math.nan
    rank = np.argsort(-np.nan_to_num(prio, nan=-np.inf), kind="stable")
    return Priority(
        priority=prio,
        low=low,
        high=high,
        journeys=journeys,
        weight_covered=covered,
        weights=w,
        rank=rank,
        n=int(use.sum()),
        method="Σ_j |relevance| · w_j, w normalised to 1; interval = Σ_j w_j · bounds (conservative)",
    )
