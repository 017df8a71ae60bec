"""One journey's scores from its inputs (`inputs.JourneyInputs`): reach, relevance (exposure effects on
NPS and conversion, key drivers of the ratings), portfolio, moments of truth, pain points, health and
attribution. Pure and set-based (numpy, scipy.sparse); runs in a worker thread.

Conventions, stated once:
- A customer's likelihood to recommend (LTR) is their latest NPS answer for the journey in the scope;
  their NPS score is +100 (9-10), 0 (7-8) or -100 (0-6), so an NPS effect is in NPS points.
- Conversion: the customer's first outcome named in the workspace's `conversion_outcomes`. The
  conversion model counts only touches before it (a touchpoint met after buying cannot have caused
  the purchase); the NPS model counts every touch in the scope.
- Relevance is the magnitude of the effect named by the workspace's `relevance_basis` (default: NPS),
  with the interval of that magnitude; significant when the effect's own 95 % interval excludes 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped]
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from services.common import stats
from services.scoring.analytics import attribution, drivers, effects, health, portfolio
from services.scoring.inputs import JourneyInputs

DEFAULT_CONVERSIONS = ("purchase", "conversion")


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    """A workspace's scoring settings (`/v1/settings`)."""

    relevance_basis: str = "nps"
    health_weights: dict[str, float] = field(default_factory=lambda: dict(health.DEFAULT_WEIGHTS))
    relevance_threshold: float | None = None  # None: the median
    reach_threshold: float | None = None
    moment_of_truth_coverage: float = 0.8
    conversion_outcomes: tuple[str, ...] = DEFAULT_CONVERSIONS
    min_sample: int = 30
    bootstrap: int = 200


def _latest(keys: NDArray[np.int64], times: NDArray[np.float64]) -> NDArray[np.int64]:
    """Index of the latest row per key."""
    order = np.lexsort((times, keys))
    last = np.ones(order.size, dtype=bool)
    last[:-1] = keys[order][1:] != keys[order][:-1]
    return order[last]


def _magnitude(effect: Any, significant_only: bool = False) -> tuple[NDArray[np.float64], ...]:
    """|effect| with the interval of the magnitude; significant when the effect's interval excludes 0."""
    value, low, high = np.abs(effect.effect), effect.low, effect.high
    significant = (low > 0) | (high < 0)
    mag_low = np.where(low > 0, low, np.where(high < 0, -high, 0.0))
    mag_high = np.maximum(np.abs(low), np.abs(high))
    return value, mag_low, mag_high, significant & effect.estimable


def _estimate(e: stats.Estimate) -> dict[str, Any]:
    return {"value": e.value, "low": e.low, "high": e.high, "n": e.n}


def _f(x: Any) -> float | None:
    x = float(x)
    return None if not np.isfinite(x) else x


def compute_scores(inputs: JourneyInputs, config: ScoringConfig) -> dict[str, Any]:
    # One BLAS thread: the maths is many small solves, which threaded BLAS made 3-25x slower on a busy
    # 2-core machine (its threads spin waiting for a core); replicas scale out instead.
    with threadpool_limits(limits=1):
        return _compute(inputs, config)


def _compute(inputs: JourneyInputs, config: ScoringConfig) -> dict[str, Any]:
    n, p = inputs.n, inputs.p
    ids = [str(t.id) for t in inputs.touchpoints]
    flags: list[str] = []

    # Exposure: customer x touchpoint met (any time in the scope), and before converting.
    c, t, when = inputs.touch_customer, inputs.touch_touchpoint, inputs.touch_time
    exposure = _indicator(c, t, n, p)
    conv_time = inputs.conversion_time
    converted = ~np.isnan(conv_time)
    before = ~converted[c] | (when <= conv_time[c])
    exposure_before = _indicator(c[before], t[before], n, p)
    reach_n = np.asarray(exposure.sum(axis=0)).ravel().astype(np.int64)
    reach = reach_n / n if n else np.zeros(p)

    # Likelihood to recommend: each customer's latest NPS answer.
    rc, rt = inputs.response_customer, inputs.response_touchpoint
    has_nps = inputs.response_nps >= 0
    latest = _latest(rc[has_nps], inputs.response_time[has_nps])
    ltr = np.full(n, np.nan)
    ltr[rc[has_nps][latest]] = inputs.response_nps[has_nps][latest]
    rated_ltr = ~np.isnan(ltr)
    nps_points = np.where(ltr >= 9, 100.0, np.where(ltr >= 7, 0.0, -100.0))

    nps_fx = effects.linear_exposure_effects(exposure[rated_ltr], nps_points[rated_ltr])
    conv_fx = effects.logistic_exposure_effects(exposure_before, converted)

    # Ratings of touchpoints: each customer's latest CSAT per touchpoint, for the key drivers.
    at_tp = (rt >= 0) & (inputs.response_csat >= 1)
    pair = rc[at_tp] * max(p, 1) + rt[at_tp]
    last = _latest(pair, inputs.response_time[at_tp])
    ratings = sp.csr_matrix(
        (inputs.response_csat[at_tp][last].astype(np.float64), (rc[at_tp][last], rt[at_tp][last])), shape=(n, p)
    )
    key = drivers.key_drivers(ratings[rated_ltr], ltr[rated_ltr], bootstrap=config.bootstrap)

    relevance, rel_low, rel_high, significant = _relevance(config.relevance_basis, nps_fx, conv_fx, key)

    # Experience per touchpoint, over all its answers in the scope.
    csat_answers = (rt >= 0) & (inputs.response_csat >= 1)
    satisfied = np.bincount(rt[csat_answers], weights=inputs.response_csat[csat_answers] >= 4, minlength=p)
    rated = np.bincount(rt[csat_answers], minlength=p)
    ces_answers = (rt >= 0) & (inputs.response_ces >= 1)
    ces_values = inputs.response_ces[ces_answers].astype(np.float64)
    ces_n = np.bincount(rt[ces_answers], minlength=p)
    ces_sum = np.bincount(rt[ces_answers], weights=ces_values, minlength=p)
    ces_sq = np.bincount(rt[ces_answers], weights=ces_values**2, minlength=p)

    # Failure impact: customers with a bad experience there vs the others who met it, by NPS category.
    bad_answer = (rt >= 0) & (((inputs.response_csat >= 1) & (inputs.response_csat <= 2)) | (inputs.response_ces >= 5))
    bad = _indicator(rc[bad_answer], rt[bad_answer], n, p)
    categories = np.stack([rated_ltr & (ltr >= 9), rated_ltr & (ltr >= 7) & (ltr <= 8), rated_ltr & (ltr <= 6)], 1)
    cat = categories.astype(np.float64)
    bad_counts = np.asarray(bad.T @ cat).astype(np.int64)
    met_not_bad = exposure - exposure.multiply(bad)
    other_counts = np.asarray(met_not_bad.T @ cat).astype(np.int64)
    impact = portfolio.failure_impact(bad_counts, other_counts)

    costs = np.array([float(tp.yearly_cost) if tp.yearly_cost is not None else np.nan for tp in inputs.touchpoints])
    folio = portfolio.portfolio(
        relevance=relevance,
        significant=significant,
        reach=reach,
        yearly_cost=costs,
        impact=impact,
        relevance_threshold=config.relevance_threshold,
        reach_threshold=config.reach_threshold,
    )
    designed = np.array([tp.designed_moment_of_truth for tp in inputs.touchpoints], dtype=bool)
    mot = portfolio.moments_of_truth(
        relevance=relevance, significant=significant, designed=designed, coverage=config.moment_of_truth_coverage
    )
    pains = portfolio.pain_points(significant=significant, satisfied=satisfied.astype(np.int64), rated=rated)

    # Health.
    in_last = np.array([tp.in_last_stage for tp in inputs.touchpoints], dtype=bool)
    completed = converted | (np.asarray(exposure[:, in_last].sum(axis=1)).ravel() > 0 if in_last.any() else converted)
    journey_ces = inputs.response_ces >= 1
    journey_ces_values = inputs.response_ces[journey_ces].astype(np.float64)
    fitness = health.journey_health(
        promoters=int(categories[:, 0].sum()),
        passives=int(categories[:, 1].sum()),
        detractors=int(categories[:, 2].sum()),
        converted=int(converted.sum()),
        entered=n,
        completed=int(completed.sum()),
        ces_n=int(journey_ces.sum()),
        ces_sum=float(journey_ces_values.sum()),
        ces_sum_sq=float((journey_ces_values**2).sum()),
        weights=config.health_weights,
    )

    # Attribution over the paths of customers who met a touchpoint before converting (or at all).
    path_customer = c[before]
    lengths = np.bincount(path_customer, minlength=n)
    walked = lengths > 0
    paths = attribution.Paths(
        offsets=np.concatenate([[0], np.cumsum(lengths[walked])]).astype(np.int64),
        touchpoints=t[before].astype(np.int64),
        times=when[before],
        converted=converted[walked],
        conversion_times=conv_time[walked],
    )
    credited = attribution.attribute_all(paths, p, bootstrap=min(config.bootstrap, 100)) if walked.any() else {}

    small = reach_n < config.min_sample
    if n < config.min_sample:
        flags.append(f"only {n} customers in the journey (fewer than {config.min_sample}): every score is uncertain")
    if int(rated_ltr.sum()) < config.min_sample:
        flags.append(f"only {int(rated_ltr.sum())} customers answered likelihood to recommend: NPS effects are weak")
    if int(converted.sum()) < config.min_sample:
        flags.append(f"only {int(converted.sum())} conversions: conversion effects and attribution are weak")
    if small.any():
        flags.append(f"{int(small.sum())} touchpoints were met by fewer than {config.min_sample} customers")
    if key.repaired:
        flags.append(
            "too few customers rated the same pairs of touchpoints: the ratings' correlation matrix needed repair, "
            f"so the key drivers' R² ({key.r2:.2f}) is inflated; read their weights as a ranking only"
        )

    touchpoints = []
    for j, tp in enumerate(inputs.touchpoints):
        has_driver = key.n_rated[j] > 0
        touchpoints.append(
            {
                "touchpoint_id": tp.id,
                "key": tp.key,
                "name": tp.name,
                "channel": tp.channel,
                "stages": list(tp.stages),
                "reach": float(reach[j]),
                "reach_n": int(reach_n[j]),
                "relevance": _f(relevance[j]),
                "relevance_low": _f(rel_low[j]),
                "relevance_high": _f(rel_high[j]),
                "relevance_significant": bool(significant[j]),
                "nps_effect": _effect(nps_fx, j),
                "conversion_effect": _effect(conv_fx, j),
                "driver": _driver(key, j) if has_driver else None,
                "csat": _estimate(stats.csat(int(satisfied[j]), int(rated[j]))),
                "ces": _estimate(stats.ces(int(ces_n[j]), float(ces_sum[j]), float(ces_sq[j]))),
                "quadrant": str(folio.quadrant[j]) or "no data",
                "yearly_cost": None if tp.yearly_cost is None else str(tp.yearly_cost),
                "currency": tp.currency,
                "cost_per_relevance": _f(folio.cost_per_relevance[j]),
                "budget_burner": bool(folio.budget_burner[j]),
                "keep_despite_low_relevance": bool(folio.keep_despite_low_relevance[j]),
                "failure_impact": {
                    "n_bad": int(bad_counts[j].sum()),
                    "nps_difference": _f(impact.difference[j]),
                    "low": _f(impact.low[j]),
                    "high": _f(impact.high[j]),
                    "p_value": _f(impact.p_value[j]),
                    "damaging": bool(impact.damaging[j]),
                },
                "designed_moment_of_truth": bool(designed[j]),
                "measured_moment_of_truth": bool(mot.measured[j]),
                "moment_of_truth": str(mot.status[j]) or "none",
                "pain_point": {
                    "pain_point": bool(pains.pain[j]),
                    "csat_difference": _f(pains.difference[j]),
                    "low": _f(pains.low[j]),
                    "high": _f(pains.high[j]),
                    "p_value": _f(pains.p_value[j]),
                },
                "small_sample": bool(small[j]),
            }
        )
    return {
        "journey_id": inputs.journey_id,
        "journey_key": inputs.journey_key,
        "counts": {
            "customers": n,
            "interactions": int(c.size),
            "responses": int(rc.size),
            "ltr_customers": int(rated_ltr.sum()),
            "conversions": int(converted.sum()),
        },
        "relevance_basis": config.relevance_basis,
        "methods": {
            "nps_effect": nps_fx.method,
            "conversion_effect": conv_fx.method,
            "drivers": key.method,
            "health": fitness.method,
        },
        "r2": {"value": _f(key.r2), "low": _f(key.r2_low), "high": _f(key.r2_high), "n": key.n} if key.n else None,
        "touchpoints": touchpoints,
        "portfolio": {
            "relevance_threshold": _f(folio.relevance_threshold),
            "reach_threshold": _f(folio.reach_threshold),
            "quadrants": {q: [ids[j] for j in range(p) if folio.quadrant[j] == q] for q in portfolio.QUADRANTS},
            "budget_burners": [ids[j] for j in folio.burner_order],
        },
        "moments_of_truth": {
            "coverage": config.moment_of_truth_coverage,
            **{
                s: [ids[j] for j in range(p) if mot.status[j] == s]
                for s in ("confirmed", "unconfirmed", "undiscovered")
            },
        },
        "pain_points": [ids[j] for j in range(p) if pains.pain[j]],
        "health": _health(fitness),
        "attribution": [_attribution(a, ids) for a in credited.values()],
        "flags": flags,
    }


def _indicator(rows: NDArray[np.int64], cols: NDArray[np.int64], n: int, p: int) -> Any:
    m = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, p))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def _relevance(basis: str, nps_fx: Any, conv_fx: Any, key: Any) -> tuple[NDArray[Any], ...]:
    if basis == "drivers":
        return key.relative_weight, key.relative_weight_low, key.relative_weight_high, key.significant
    return _magnitude(conv_fx if basis == "conversion" else nps_fx)


def _effect(fx: Any, j: int) -> dict[str, Any]:
    ok = bool(fx.estimable[j])
    return {
        "effect": _f(fx.effect[j]) if ok else None,
        "low": _f(fx.low[j]) if ok else None,
        "high": _f(fx.high[j]) if ok else None,
        "p_value": _f(fx.p_value[j]) if ok else None,
        "n_exposed": int(fx.n_exposed[j]),
        "estimable": ok,
    }


def _driver(key: Any, j: int) -> dict[str, Any]:
    exact = key.lmg is not None
    return {
        "relative_weight": float(key.relative_weight[j]),
        "low": float(key.relative_weight_low[j]),
        "high": float(key.relative_weight_high[j]),
        "lmg": float(key.lmg[j]) if exact else None,
        "lmg_low": float(key.lmg_low[j]) if exact else None,
        "lmg_high": float(key.lmg_high[j]) if exact else None,
        "n_rated": int(key.n_rated[j]),
        "significant": bool(key.significant[j]),
    }


def _health(h: Any) -> dict[str, Any]:
    return {
        "score": _f(h.score) if h.score is not None else None,
        "low": _f(h.low) if h.low is not None else None,
        "high": _f(h.high) if h.high is not None else None,
        "n": h.n,
        "components": [
            {
                "name": k.name,
                "score": float(k.score),
                "low": _f(k.low) if k.low is not None else None,
                "high": _f(k.high) if k.high is not None else None,
                "n": k.n,
                "weight": float(k.weight),
                "raw": _f(k.value) if k.value is not None else None,
            }
            for k in h.components
        ],
        "weights": dict(h.weights),
        "method": h.method,
    }


def _attribution(a: Any, ids: list[str]) -> dict[str, Any]:
    def by_id(values: Any) -> dict[str, float | None]:
        return {ids[j]: _f(values[j]) for j in range(len(ids))}

    return {
        "model": a.model,
        "credit": by_id(a.credit),
        "low": by_id(a.low),
        "high": by_id(a.high),
        "conversions": int(a.conversions),
        "paths": int(a.paths),
        "removal_effect": by_id(a.removal_effect) if a.removal_effect is not None else None,
        "conversion_probability": _f(a.conversion_probability) if a.conversion_probability is not None else None,
        "method": a.method,
    }
