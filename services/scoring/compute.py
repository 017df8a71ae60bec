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
from decimal import Decimal
from typing import Any
from uuid import UUID

import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped]
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from services.common import stats
from services.scoring.analytics import attribution, drivers, effects, health, portfolio
from services.scoring.inputs import JourneyInputs, Touchpoint
from services.scoring.tally import Customers, Tally, customers_of, indicator, latest, tally_of

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


@dataclass(frozen=True, slots=True)
class Fit:
    """The model-based parts of a snapshot (effects, key drivers, relevance, attribution), fitted on the
    customers' rows by a full recompute. Snapshots that only refresh the counts carry them unchanged
    until the next fit (`fitted_at` says when it was)."""

    relevance: NDArray[np.float64]  # (p,) NaN: no estimate
    relevance_low: NDArray[np.float64]
    relevance_high: NDArray[np.float64]
    significant: NDArray[np.bool_]
    nps_effect: list[dict[str, Any]]
    conversion_effect: list[dict[str, Any]]
    driver: list[dict[str, Any] | None]
    methods: dict[str, str]
    r2: dict[str, Any] | None
    attribution: list[dict[str, Any]]
    flags: list[str]


def compute_scores(inputs: JourneyInputs, config: ScoringConfig) -> dict[str, Any]:
    """A full recompute: the tally counted and the models fitted on the inputs."""
    # One BLAS thread: the maths is many small solves, which threaded BLAS made 3-25x slower on a busy
    # 2-core machine (its threads spin waiting for a core); replicas scale out instead.
    with threadpool_limits(limits=1):
        per = customers_of(inputs)
        tally = tally_of(inputs, per)
        fit = _fit(inputs, per, config)
        body = _assemble(inputs.journey_id, inputs.journey_key, inputs.touchpoints, tally, fit, config)
        return {**body, "fit_counts": body["counts"]}


def refresh_scores(previous: dict[str, Any], tally: Tally, config: ScoringConfig) -> dict[str, Any]:
    """A snapshot from the scope's current tally and the fit of `previous` (a stored snapshot of the
    same touchpoints): counts, reach, experience, health, portfolio and pain points follow the events;
    the fitted parts are carried."""
    tps = previous["touchpoints"]
    if len(tps) != tally.p:
        raise ValueError(f"the tally counts {tally.p} touchpoints, the snapshot {len(tps)}")

    def values(name: str) -> NDArray[np.float64]:
        return np.array([np.nan if t[name] is None else t[name] for t in tps], dtype=np.float64)

    fit = Fit(
        relevance=values("relevance"),
        relevance_low=values("relevance_low"),
        relevance_high=values("relevance_high"),
        significant=np.array([t["relevance_significant"] for t in tps], dtype=bool),
        nps_effect=[t["nps_effect"] for t in tps],
        conversion_effect=[t["conversion_effect"] for t in tps],
        driver=[t["driver"] for t in tps],
        methods={k: v for k, v in previous["methods"].items() if k != "health"},
        r2=previous["r2"],
        attribution=previous["attribution"],
        flags=list(previous["fit_flags"]),
    )
    touchpoints = [
        Touchpoint(
            id=UUID(str(t["touchpoint_id"])),
            key=t["key"],
            name=t["name"],
            channel=t["channel"],
            yearly_cost=None if t["yearly_cost"] is None else Decimal(t["yearly_cost"]),
            currency=t["currency"],
            designed_moment_of_truth=t["designed_moment_of_truth"],
            stages=tuple(t["stages"]),
            in_last_stage=False,  # counted in the tally's `completed` already
        )
        for t in tps
    ]
    with threadpool_limits(limits=1):
        body = _assemble(UUID(str(previous["journey_id"])), previous["journey_key"], touchpoints, tally, fit, config)
    return {**body, "fit_counts": previous["fit_counts"]}


def _fit(inputs: JourneyInputs, per: Customers, config: ScoringConfig) -> Fit:
    n, p = inputs.n, inputs.p
    c, t, when = inputs.touch_customer, inputs.touch_touchpoint, inputs.touch_time
    # Exposure before converting: the conversion model's (a touch after buying cannot have caused it).
    conv_time = inputs.conversion_time
    converted = per.converted
    before = ~converted[c] | (when <= conv_time[c])
    exposure_before = indicator(c[before], t[before], n, p)

    rated_ltr = ~np.isnan(per.ltr)
    nps_points = np.where(per.ltr >= 9, 100.0, np.where(per.ltr >= 7, 0.0, -100.0))
    nps_fx = effects.linear_exposure_effects(per.exposure[rated_ltr], nps_points[rated_ltr])
    conv_fx = effects.logistic_exposure_effects(exposure_before, converted)

    # Ratings of touchpoints: each customer's latest CSAT per touchpoint, for the key drivers.
    rc, rt = inputs.response_customer, inputs.response_touchpoint
    at_tp = (rt >= 0) & (inputs.response_csat >= 1)
    pair = rc[at_tp] * max(p, 1) + rt[at_tp]
    last = latest(pair, inputs.response_time[at_tp])
    ratings = sp.csr_matrix(
        (inputs.response_csat[at_tp][last].astype(np.float64), (rc[at_tp][last], rt[at_tp][last])), shape=(n, p)
    )
    key = drivers.key_drivers(ratings[rated_ltr], per.ltr[rated_ltr], bootstrap=config.bootstrap)
    relevance, rel_low, rel_high, significant = _relevance(config.relevance_basis, nps_fx, conv_fx, key)

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
    ids = [str(tp.id) for tp in inputs.touchpoints]

    flags = []
    if key.repaired:
        flags.append(
            "too few customers rated the same pairs of touchpoints: the ratings' correlation matrix needed repair, "
            f"so the key drivers' R² ({key.r2:.2f}) is inflated; read their weights as a ranking only"
        )
    return Fit(
        relevance=relevance,
        relevance_low=rel_low,
        relevance_high=rel_high,
        significant=significant,
        nps_effect=[_effect(nps_fx, j) for j in range(p)],
        conversion_effect=[_effect(conv_fx, j) for j in range(p)],
        driver=[_driver(key, j) if key.n_rated[j] > 0 else None for j in range(p)],
        methods={"nps_effect": nps_fx.method, "conversion_effect": conv_fx.method, "drivers": key.method},
        r2={"value": _f(key.r2), "low": _f(key.r2_low), "high": _f(key.r2_high), "n": key.n} if key.n else None,
        attribution=[_attribution(a, ids) for a in credited.values()],
        flags=flags,
    )


def _assemble(
    journey_id: UUID,
    journey_key: str,
    tps: list[Touchpoint],
    tally: Tally,
    fit: Fit,
    config: ScoringConfig,
) -> dict[str, Any]:
    """The snapshot's body from the tally (counts and what follows from them) and the fit."""
    p, n = len(tps), tally.customers
    ids = [str(tp.id) for tp in tps]
    reach_n = tally.reach_n
    reach = reach_n / n if n else np.zeros(p)
    promoters, passives, detractors = (int(x) for x in tally.categories)
    ltr_customers = promoters + passives + detractors
    impact = portfolio.failure_impact(tally.bad, tally.others)
    costs = np.array([float(tp.yearly_cost) if tp.yearly_cost is not None else np.nan for tp in tps])
    folio = portfolio.portfolio(
        relevance=fit.relevance,
        significant=fit.significant,
        reach=reach,
        yearly_cost=costs,
        impact=impact,
        relevance_threshold=config.relevance_threshold,
        reach_threshold=config.reach_threshold,
    )
    designed = np.array([tp.designed_moment_of_truth for tp in tps], dtype=bool)
    mot = portfolio.moments_of_truth(
        relevance=fit.relevance,
        significant=fit.significant,
        designed=designed,
        coverage=config.moment_of_truth_coverage,
    )
    pains = portfolio.pain_points(significant=fit.significant, satisfied=tally.satisfied, rated=tally.rated)
    fitness = health.journey_health(
        promoters=promoters,
        passives=passives,
        detractors=detractors,
        converted=tally.conversions,
        entered=n,
        completed=tally.completed,
        ces_n=int(tally.journey_ces[0]),
        ces_sum=float(tally.journey_ces[1]),
        ces_sum_sq=float(tally.journey_ces[2]),
        weights=config.health_weights,
    )

    small = reach_n < config.min_sample
    flags: list[str] = []
    if n < config.min_sample:
        flags.append(f"only {n} customers in the journey (fewer than {config.min_sample}): every score is uncertain")
    if ltr_customers < config.min_sample:
        flags.append(f"only {ltr_customers} customers answered likelihood to recommend: NPS effects are weak")
    if tally.conversions < config.min_sample:
        flags.append(f"only {tally.conversions} conversions: conversion effects and attribution are weak")
    if small.any():
        flags.append(f"{int(small.sum())} touchpoints were met by fewer than {config.min_sample} customers")

    touchpoints = []
    for j, tp in enumerate(tps):
        ces_n, ces_sum, ces_sq = (int(x) for x in tally.ces[j])
        touchpoints.append(
            {
                "touchpoint_id": tp.id,
                "key": tp.key,
                "name": tp.name,
                "channel": tp.channel,
                "stages": list(tp.stages),
                "reach": float(reach[j]),
                "reach_n": int(reach_n[j]),
                "relevance": _f(fit.relevance[j]),
                "relevance_low": _f(fit.relevance_low[j]),
                "relevance_high": _f(fit.relevance_high[j]),
                "relevance_significant": bool(fit.significant[j]),
                "nps_effect": fit.nps_effect[j],
                "conversion_effect": fit.conversion_effect[j],
                "driver": fit.driver[j],
                "csat": _estimate(stats.csat(int(tally.satisfied[j]), int(tally.rated[j]))),
                "ces": _estimate(stats.ces(ces_n, float(ces_sum), float(ces_sq))),
                "quadrant": str(folio.quadrant[j]) or "no data",
                "yearly_cost": None if tp.yearly_cost is None else str(tp.yearly_cost),
                "currency": tp.currency,
                "cost_per_relevance": _f(folio.cost_per_relevance[j]),
                "budget_burner": bool(folio.budget_burner[j]),
                "keep_despite_low_relevance": bool(folio.keep_despite_low_relevance[j]),
                "failure_impact": {
                    "n_bad": int(tally.bad[j].sum()),
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
        "journey_id": journey_id,
        "journey_key": journey_key,
        "counts": {
            "customers": n,
            "interactions": tally.interactions,
            "responses": tally.responses,
            "ltr_customers": ltr_customers,
            "conversions": tally.conversions,
        },
        "relevance_basis": config.relevance_basis,
        "methods": {**fit.methods, "health": fitness.method},
        "r2": fit.r2,
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
        "attribution": fit.attribution,
        "flags": flags + fit.flags,
        "fit_flags": fit.flags,
    }


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
