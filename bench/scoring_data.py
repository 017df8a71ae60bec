"""A journey with planted effects, for the scoring tests and the scoring benchmark.

Every touchpoint gets a known reach, a known effect on likelihood to recommend (LTR, 0-10 points of
the latent score) and a known effect on the log-odds of converting, and a yearly cost. Planted on
purpose: core touchpoints (strong, wide reach), levers (strong, rare), moderate ones, hygiene ones
(weak, wide, cheap), and budget burners (costly, no effect at all). Customers meet each touchpoint
independently with its reach, convert by a logit of what they met, answer LTR by a linear latent
score of what they met, and rate some of what they met (CSAT) without any link to their LTR for
the burners (so no failure damage hides there).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
from numpy.typing import NDArray
from scipy import stats as sps  # type: ignore[import-untyped]

from services.scoring.inputs import JourneyInputs, Touchpoint

# kind -> (reach, LTR effect, conversion log-odds effect, yearly cost)
KINDS: dict[str, tuple[float, float, float, int]] = {
    "core": (0.6, 1.5, 1.0, 120_000),
    "lever": (0.06, 1.4, 1.2, 15_000),
    "moderate": (0.45, 0.6, 0.5, 60_000),
    "hygiene": (0.7, 0.3, 0.2, 10_000),
    "burner": (0.4, 0.0, 0.0, 400_000),
}
# The planted kinds in the order of a 20-touchpoint journey (the test's); larger journeys repeat it.
PATTERN = ["core", "lever", "moderate", "hygiene", "burner"] * 4
START = 1_780_000_000.0  # epoch seconds, a date in 2026
NOISE = 1.5  # standard deviation of the latent LTR around its planted mean


@dataclass(frozen=True, slots=True)
class Planted:
    kinds: list[str]
    reach: NDArray[np.float64]
    ltr_effect: NDArray[np.float64]
    conversion_effect: NDArray[np.float64]
    cost: NDArray[np.float64]
    # The true effects on the scale the service reports: the average over the customers of the change
    # from not meeting to meeting the touchpoint, in NPS points and in percentage points of converting
    # (exact under the generator's model; computed for journeys of up to 50 touchpoints).
    nps_truth: NDArray[np.float64]
    conversion_truth: NDArray[np.float64]
    inputs: JourneyInputs


def planted_journey(
    *, customers: int = 20_000, touchpoints: int = 20, ltr_share: float = 0.6, rating_share: float = 0.3, seed: int = 1
) -> Planted:
    rng = np.random.default_rng(seed)
    kinds = [PATTERN[j % len(PATTERN)] for j in range(touchpoints)]
    # Vary the strengths a little within a kind, so every touchpoint's truth is distinct except the burners'.
    spread = 1.0 + 0.25 * (np.arange(touchpoints) // len(PATTERN)) / max(1, touchpoints // len(PATTERN))
    reach = np.array([KINDS[k][0] for k in kinds]) * (0.8 + 0.4 * rng.random(touchpoints))
    if touchpoints > len(PATTERN):  # a large catalogue: each customer meets ~5 touchpoints, as on a real site
        reach *= 5.0 / reach.sum()
    ltr_effect = np.array([KINDS[k][1] for k in kinds]) / spread
    conversion_effect = np.array([KINDS[k][2] for k in kinds]) / spread
    cost = np.array([KINDS[k][3] for k in kinds], dtype=np.float64)

    met = rng.random((customers, touchpoints)) < reach  # customers x touchpoints
    c, t = np.nonzero(met)  # ordered by customer
    start = START + rng.random(customers) * 60 * 86400
    when = start[c] + rng.random(c.size) * 7 * 86400
    order = np.lexsort((when, c))
    c, t, when = c[order], t[order], when[order]

    logit = -1.2 + met @ conversion_effect
    converted = rng.random(customers) < 1 / (1 + np.exp(-logit))
    last_touch = np.full(customers, START)
    np.maximum.at(last_touch, c, when)
    conversion_time = np.where(converted, last_touch + 3600.0, np.nan)

    latent = 5.5 + met @ ltr_effect + rng.normal(0, NOISE, customers)
    ltr = np.clip(np.rint(latent), 0, 10).astype(np.int64)
    answers = np.nonzero(rng.random(customers) < ltr_share)[0]
    rated = rng.random(c.size) < rating_share
    csat = np.clip(np.rint(3.5 + 0.4 * ltr_effect[t[rated]] + rng.normal(0, 1.0, int(rated.sum()))), 1, 5)

    nps_truth = np.full(touchpoints, np.nan)
    conversion_truth = np.full(touchpoints, np.nan)
    if touchpoints <= 50:
        for j in range(touchpoints):
            latent_without = 5.5 + met @ ltr_effect - met[:, j] * ltr_effect[j]
            logit_without = logit - met[:, j] * conversion_effect[j]
            nps_truth[j] = np.mean(_expected_nps(latent_without + ltr_effect[j]) - _expected_nps(latent_without))
            conversion_truth[j] = 100 * np.mean(
                _sigmoid(logit_without + conversion_effect[j]) - _sigmoid(logit_without)
            )
    n_ltr, n_csat = answers.size, int(rated.sum())
    inputs = JourneyInputs(
        journey_id=uuid.UUID(int=seed),
        journey_key="planted",
        touchpoints=[
            Touchpoint(
                id=uuid.UUID(int=(seed << 32) + 1000 + j),
                key=f"{kinds[j]}-{j}",
                name=f"{kinds[j]} {j}",
                channel="web",
                yearly_cost=Decimal(int(cost[j])),
                currency="EUR",
                designed_moment_of_truth=kinds[j] in ("core", "burner"),
                stages=("buy",),
                in_last_stage=False,
            )
            for j in range(touchpoints)
        ],
        customers=np.arange(customers, dtype=np.int64),
        touch_customer=c.astype(np.int64),
        touch_touchpoint=t.astype(np.int64),
        touch_time=when,
        response_customer=np.concatenate([answers, c[rated]]).astype(np.int64),
        response_touchpoint=np.concatenate([np.full(n_ltr, -1), t[rated]]).astype(np.int64),
        response_nps=np.concatenate([ltr[answers], np.full(n_csat, -1)]).astype(np.int64),
        response_csat=np.concatenate([np.full(n_ltr, -1), csat]).astype(np.int64),
        response_ces=np.full(n_ltr + n_csat, -1, dtype=np.int64),
        response_time=np.concatenate([last_touch[answers] + 7200.0, when[rated] + 60.0]),
        conversion_time=conversion_time,
        conversion_value=float(converted.sum()) * 480.0,
    )
    return Planted(kinds, reach, ltr_effect, conversion_effect, cost, nps_truth, conversion_truth, inputs)


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return 1 / (1 + np.exp(-x))


def _expected_nps(mean: NDArray[np.float64]) -> NDArray[np.float64]:
    """E[NPS points] of LTR = clip(round(N(mean, 1.5²)), 0, 10): +100 at 9-10 (latent ≥ 8.5), -100 at
    0-6 (latent < 6.5)."""
    promoter = sps.norm.sf(8.5, loc=mean, scale=NOISE)
    detractor = sps.norm.cdf(6.5, loc=mean, scale=NOISE)
    return np.asarray(100 * (promoter - detractor), dtype=np.float64)
