"""Journey health against hand-computed composites: the NPS check numbers of DESIGN §4, Wilson intervals from
statsmodels and the t interval from scipy on the raw CES answers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps  # type: ignore[import-untyped]
from statsmodels.stats.proportion import proportion_confint  # type: ignore[import-untyped]

from services.scoring.analytics.health import DEFAULT_WEIGHTS, Health, journey_health

Z = 1.959964
# DESIGN §4: 50/30/20 → NPS 30, adjusted 29.126, interval (14.051, 44.201)
NPS_ADJ, NPS_LOW, NPS_HIGH = 29.126, 14.051, 44.201
CES_ANSWERS = np.repeat([1.0, 2.0, 3.0, 4.0, 5.0], 10)  # n 50, mean 3

BASE: dict[str, Any] = {
    "promoters": 50,
    "passives": 30,
    "detractors": 20,
    "converted": 30,
    "entered": 100,
    "completed": 60,
    "ces_n": len(CES_ANSWERS),
    "ces_sum": float(CES_ANSWERS.sum()),
    "ces_sum_sq": float((CES_ANSWERS**2).sum()),
}


def health(weights: Mapping[str, float] = DEFAULT_WEIGHTS, **changes: Any) -> Health:
    """The journey of BASE with some counts changed."""
    return journey_health(**{**BASE, **changes}, weights=weights)


def reference_components() -> dict[str, tuple[float, float, float]]:
    """(score, centre, se) on 0-100 for each component, from the references, not from the module."""
    conv = proportion_confint(30, 100, alpha=0.05, method="wilson")
    comp = proportion_confint(60, 100, alpha=0.05, method="wilson")
    mean, sem = CES_ANSWERS.mean(), sps.sem(CES_ANSWERS)
    t_low, t_high = sps.t.interval(0.95, len(CES_ANSWERS) - 1, loc=mean, scale=sem)
    return {
        "nps": (65.0, (NPS_ADJ + 100) / 2, (NPS_HIGH - NPS_LOW) / (2 * Z) / 2),
        "conversion": (30.0, 50 * (conv[0] + conv[1]), 100 * (conv[1] - conv[0]) / (2 * Z)),
        "drop_off": (60.0, 50 * (comp[0] + comp[1]), 100 * (comp[1] - comp[0]) / (2 * Z)),
        "effort": ((7 - 3) / 6 * 100, (7 - 3) / 6 * 100, (t_high - t_low) / 6 * 100 / (2 * Z)),
    }


def composite(weights: dict[str, float]) -> tuple[float, float, float]:
    ref = reference_components()
    total = sum(weights.values())
    w = {k: v / total for k, v in weights.items()}
    score = sum(w[k] * ref[k][0] for k in w)
    centre = sum(w[k] * ref[k][1] for k in w)
    se = math.sqrt(sum((w[k] * ref[k][2]) ** 2 for k in w))
    return score, centre - Z * se, centre + Z * se


class TestNpsComponent:
    def test_nps_component_maps_design_check_numbers(self):
        h = health()
        nps = h.components[0]
        assert nps.name == "nps"
        assert nps.value == pytest.approx(30.0)
        assert nps.score == pytest.approx(65.0)
        assert nps.low == pytest.approx((NPS_LOW + 100) / 2, abs=1e-3)
        assert nps.high == pytest.approx((NPS_HIGH + 100) / 2, abs=1e-3)
        assert nps.n == 100

    def test_health_of_nps_alone_is_the_nps_component(self):
        h = health(weights={"nps": 1.0})
        assert h.score == pytest.approx(65.0)
        assert h.low == pytest.approx((NPS_LOW + 100) / 2, abs=1e-3)
        assert h.high == pytest.approx((NPS_HIGH + 100) / 2, abs=1e-3)
        assert [c.name for c in h.components] == ["nps"]

    def test_nps_component_extremes_map_to_0_and_100(self):
        low = health(promoters=0, passives=0, detractors=10, weights={"nps": 1})
        high = health(promoters=10, passives=0, detractors=0, weights={"nps": 1})
        assert low.score == pytest.approx(0.0)
        assert high.score == pytest.approx(100.0)
        assert high.high == pytest.approx(100.0)  # adjusted 76.923, upper bound clipped (DESIGN §4)
        assert high.components[0].low is not None
        assert high.components[0].low < 100.0


class TestComposite:
    def test_health_default_weights_hand_composite(self):
        # 0.4 · 65 + 0.3 · 30 + 0.15 · 60 + 0.15 · (7 − 3) / 6 · 100 = 26 + 9 + 9 + 10
        h = health()
        assert h.score == pytest.approx(54.0)
        score, low, high = composite(DEFAULT_WEIGHTS)
        assert score == pytest.approx(54.0)
        assert h.low == pytest.approx(low, abs=2e-3)
        assert h.high == pytest.approx(high, abs=2e-3)
        assert h.n == 100
        by_name = {c.name: c for c in h.components}
        conv = proportion_confint(30, 100, alpha=0.05, method="wilson")
        assert by_name["conversion"].low == pytest.approx(100 * conv[0])
        assert by_name["conversion"].value == pytest.approx(0.3)
        assert by_name["drop_off"].value == pytest.approx(0.4)
        assert by_name["effort"].value == pytest.approx(3.0)
        mean, sem = CES_ANSWERS.mean(), sps.sem(CES_ANSWERS)
        t_low, t_high = sps.t.interval(0.95, 49, loc=mean, scale=sem)
        assert by_name["effort"].low == pytest.approx((7 - t_high) / 6 * 100)
        assert by_name["effort"].high == pytest.approx((7 - t_low) / 6 * 100)

    def test_health_effort_extremes_map_to_100_and_0(self):
        best = health(ces_n=3, ces_sum=3.0, ces_sum_sq=3.0, weights={"effort": 1})
        worst = health(ces_n=3, ces_sum=21.0, ces_sum_sq=147.0, weights={"effort": 1})
        assert best.score == pytest.approx(100.0)
        assert worst.score == pytest.approx(0.0)


class TestRenormalisation:
    def test_health_without_effort_renormalises_remaining_weights(self):
        h = health(ces_n=0, ces_sum=0.0, ces_sum_sq=0.0)
        # (26 + 9 + 9) / 0.85
        assert h.score == pytest.approx(44 / 0.85)
        assert h.weights == pytest.approx(
            {"nps": 0.4 / 0.85, "conversion": 0.3 / 0.85, "drop_off": 0.15 / 0.85, "effort": 0.0}
        )
        assert "effort" in h.method
        assert "renormalised" in h.method
        _, low, high = composite({"nps": 0.4, "conversion": 0.3, "drop_off": 0.15})
        assert h.low == pytest.approx(low, abs=2e-3)
        assert h.high == pytest.approx(high, abs=2e-3)

    def test_health_nobody_entered_leaves_out_conversion_and_drop_off(self):
        h = health(converted=0, entered=0, completed=0)
        assert [c.name for c in h.components] == ["nps", "effort"]
        assert h.score == pytest.approx((0.4 * 65 + 0.15 * 400 / 6) / 0.55)
        assert h.n == 0

    def test_health_without_any_data_has_no_score(self):
        zeros: dict[str, Any] = dict.fromkeys(BASE, 0)
        h = health(**zeros)
        assert h.score is None
        assert h.low is None
        assert h.components == []

    def test_health_single_ces_answer_has_score_but_no_interval(self):
        h = health(ces_n=1, ces_sum=4.0, ces_sum_sq=16.0, weights={"effort": 1})
        assert h.score == pytest.approx(50.0)
        assert h.low is None
        assert "no interval" in h.method


class TestValidation:
    @pytest.mark.parametrize(
        ("weights", "message"),
        [
            ({"nps": -0.1, "conversion": 1.0}, "non-negative"),
            ({"nps": 0.0, "conversion": 0.0}, "greater than 0"),
            ({"nps": 1.0, "loyalty": 1.0}, "unknown health component"),
            ({"nps": math.nan}, "non-negative"),
        ],
    )
    def test_health_rejects_bad_weights(self, weights, message):
        with pytest.raises(ValueError, match=message):
            health(weights=weights)

    def test_health_rejects_more_conversions_than_entries(self):
        with pytest.raises(ValueError, match="exceed"):
            health(converted=101)

    def test_health_rejects_ces_outside_scale(self):
        with pytest.raises(ValueError, match="1-7"):
            health(ces_n=2, ces_sum=16.0, ces_sum_sq=128.0)
