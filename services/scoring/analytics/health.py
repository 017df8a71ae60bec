"""Journey health (DESIGN §4): one 0-100 KPI per journey team, an NPS-led weighted composite of NPS,
conversion, drop-off and effort, with its components, n and a 95 % interval.

Each component is mapped to 0-100, higher is better:
- nps        → (NPS + 100) / 2                         interval: adjusted Wald (Rocks 2016), mapped
- conversion → converted / entered × 100                interval: Wilson
- drop_off   → 100 − share of entered who did not complete, i.e. completed / entered × 100; Wilson
- effort     → (7 − CES) / 6 × 100  (CES 1 → 100, 7 → 0) interval: Student t, mapped and clipped
The metric formulas are the kit's (`services.common.stats`); the conversion and completion shares use its
share-with-Wilson-interval formula (`stats.csat`), which is the same maths for any 0/1 outcome.

Health = Σ w_c · score_c with the weights renormalised over the components that have data. The interval is
the delta method for this linear combination of independent components: centre Σ w_c · centre_c,
se = sqrt(Σ w_c² · se_c²), ± z, clipped to [0, 100]. Each component's centre and se are those its own
interval is built on (adjusted NPS; Wilson midpoint and half-width / z; CES mean and t half-width / z), so
a health built from one component reproduces that component's interval. Independence is an assumption:
the four measures come partly from the same customers, so the interval is indicative."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from services.common import stats

DEFAULT_WEIGHTS = {"nps": 0.4, "conversion": 0.3, "drop_off": 0.15, "effort": 0.15}
COMPONENTS = tuple(DEFAULT_WEIGHTS)


@dataclass(frozen=True, slots=True)
class Component:
    name: str  # one of COMPONENTS
    score: float  # 0-100, higher is better
    low: float | None  # the component's own 95 % interval on the 0-100 scale
    high: float | None
    n: int  # responses (nps, effort) or customers who entered (conversion, drop_off)
    weight: float  # the weight used, after renormalisation
    value: float  # raw: NPS -100..100, conversion or drop-off rate 0..1, CES 1..7
    centre: float  # the 0-100 value the interval and the composite's interval are built on
    se: float | None  # its standard error on the 0-100 scale; None without an interval (CES n = 1)


@dataclass(frozen=True, slots=True)
class Health:
    score: float | None  # None when no weighted component has data
    low: float | None
    high: float | None
    n: int  # customers in the journey (entered)
    components: list[Component]  # the components used, in COMPONENTS order
    weights: dict[str, float]  # the weights used (renormalised; 0 for the components left out)
    method: str


def _check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    unknown = sorted(set(weights) - set(COMPONENTS))
    if unknown:
        raise ValueError(f"unknown health component(s) {unknown}; the components are {list(COMPONENTS)}")
    w = {name: float(weights.get(name, 0.0)) for name in COMPONENTS}
    bad = [name for name, v in w.items() if not math.isfinite(v) or v < 0]
    if bad:
        raise ValueError(f"health weights must be non-negative numbers; check {bad}")
    if sum(w.values()) <= 0:
        raise ValueError("at least one health weight must be greater than 0")
    return w


def _check_count(name: str, v: int) -> int:
    if v < 0 or v != int(v):
        raise ValueError(f"{name} must be a non-negative whole number, got {v}")
    return int(v)


def _share(name: str, hits: int, n: int) -> Component | None:
    """A share of customers in percent with the kit's Wilson interval; se = half-width / z stays positive at
    0 % and 100 %, where the Wald se would claim certainty."""
    est = stats.csat(hits, n)
    if est.value is None or est.low is None or est.high is None:
        return None
    rate = hits / n
    return Component(
        name=name,
        score=est.value,
        low=est.low,
        high=est.high,
        n=n,
        weight=0.0,
        value=rate if name == "conversion" else 1 - rate,
        centre=(est.low + est.high) / 2,
        se=(est.high - est.low) / (2 * stats.Z),
    )


def _nps(promoters: int, passives: int, detractors: int) -> Component | None:
    est, adjusted = stats.nps(promoters, passives, detractors)
    if est.value is None or est.low is None or est.high is None or est.se is None or adjusted is None:
        return None
    return Component(
        name="nps",
        score=(est.value + 100) / 2,
        low=(est.low + 100) / 2,
        high=(est.high + 100) / 2,
        n=est.n,
        weight=0.0,
        value=est.value,
        centre=(adjusted + 100) / 2,
        se=est.se / 2,  # unclipped, so a clipped bound does not shrink the composite's interval
    )


def _effort(n: int, total: float, total_sq: float) -> Component | None:
    est = stats.ces(n, total, total_sq)
    if est.value is None:
        return None
    score = (7 - est.value) / 6 * 100
    if est.low is None or est.high is None:
        return Component("effort", score, None, None, n, 0.0, est.value, score, None)
    lo, hi = (7 - est.high) / 6 * 100, (7 - est.low) / 6 * 100
    return Component(
        name="effort",
        score=score,
        low=max(0.0, lo),
        high=min(100.0, hi),
        n=n,
        weight=0.0,
        value=est.value,
        centre=score,
        se=(hi - lo) / (2 * stats.Z),  # t half-width / z: the composite keeps the small-sample t width
    )


def journey_health(
    *,
    promoters: int,
    passives: int,
    detractors: int,
    converted: int,
    entered: int,
    completed: int,
    ces_n: int,
    ces_sum: float,
    ces_sum_sq: float,
    weights: Mapping[str, float] = DEFAULT_WEIGHTS,
) -> Health:
    """The journey's health (0-100) from its counts; see the module docstring for the mapping and interval.
    Components without data (no NPS answers, nobody entered, no CES answers) are left out and the remaining
    weights renormalised; `method` says which. Raises ValueError for negative or inconsistent counts and for
    weights that are negative, unknown or all 0."""
    w = _check_weights(weights)
    promoters, passives, detractors = (
        _check_count("promoters", promoters),
        _check_count("passives", passives),
        _check_count("detractors", detractors),
    )
    entered = _check_count("entered", entered)
    converted, completed = _check_count("converted", converted), _check_count("completed", completed)
    if converted > entered or completed > entered:
        raise ValueError("converted and completed cannot exceed entered")
    ces_n = _check_count("ces_n", ces_n)
    if ces_n:
        mean = ces_sum / ces_n
        if not 1 - 1e-9 <= mean <= 7 + 1e-9 or ces_sum_sq < ces_sum * mean * (1 - 1e-9):
            raise ValueError("ces_sum and ces_sum_sq do not describe CES answers on 1-7")

    candidates = {
        "nps": _nps(promoters, passives, detractors),
        "conversion": _share("conversion", converted, entered),
        "drop_off": _share("drop_off", completed, entered),
        "effort": _effort(ces_n, ces_sum, ces_sum_sq),
    }
    missing = [name for name in COMPONENTS if w[name] > 0 and candidates[name] is None]
    used = [c for name, c in candidates.items() if c is not None and w[name] > 0]
    total = sum(w[c.name] for c in used)
    if not used:
        return Health(
            None, None, None, entered, [], dict.fromkeys(COMPONENTS, 0.0), f"no data for {', '.join(missing)}"
        )
    eff = {name: (w[name] / total if candidates[name] is not None else 0.0) for name in COMPONENTS}
    components = [Component(c.name, c.score, c.low, c.high, c.n, eff[c.name], c.value, c.centre, c.se) for c in used]
    score = sum(c.weight * c.score for c in components)
    low = high = None
    if all(c.se is not None for c in components):
        centre = sum(c.weight * c.centre for c in components)
        se = math.sqrt(sum((c.weight * c.se) ** 2 for c in components if c.se is not None))
        low, high = max(0.0, centre - stats.Z * se), min(100.0, centre + stats.Z * se)
    method = "weighted mean of 0-100 components: " + ", ".join(f"{c.name} {c.weight:.3f}" for c in components)
    if missing:
        method += f"; left out for lack of data: {', '.join(missing)} (weights renormalised)"
    method += (
        "; 95 % interval by the delta method, independent components, clipped to [0, 100]"
        if low is not None
        else "; no interval: a component has too few answers for one"
    )
    return Health(score, low, high, entered, components, eff, method)
