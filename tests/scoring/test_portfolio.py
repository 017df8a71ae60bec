"""Portfolio decisions against hand-derived cases, the NPS check numbers of DESIGN §4, Newcombe's (1998)
published intervals and statsmodels' two-proportion test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps  # type: ignore[import-untyped]
from statsmodels.stats.proportion import (  # type: ignore[import-untyped]
    confint_proportions_2indep,
    proportions_ztest,
)

from services.scoring.analytics.portfolio import (
    QUADRANTS,
    cross_journey_priority,
    failure_impact,
    moments_of_truth,
    pain_points,
    portfolio,
)

# DESIGN §4: 50/30/20 → NPS 30, adjusted 29.126, interval (14.051, 44.201)
ADJ, LOW, HIGH = 29.126, 14.051, 44.201
SE = (HIGH - LOW) / (2 * 1.959964)


def no_damage(p: int):
    return failure_impact(np.zeros((p, 3), dtype=int), np.tile([50, 30, 20], (p, 1)))


class TestFailureImpact:
    def test_failure_impact_mirrored_groups_match_design_numbers(self):
        # bad: 20/30/50 is the mirror image of 50/30/20, so its adjusted NPS is −29.126 with the same se
        fi = failure_impact([[20, 30, 50]], [[50, 30, 20]])
        diff = -2 * ADJ
        se = math.sqrt(2) * SE
        assert fi.difference[0] == pytest.approx(diff, abs=2e-3)
        assert fi.low[0] == pytest.approx(diff - 1.959964 * se, abs=5e-3)
        assert fi.high[0] == pytest.approx(diff + 1.959964 * se, abs=5e-3)
        assert fi.p_value[0] == pytest.approx(2 * sps.norm.sf(abs(diff) / se), rel=1e-2)
        assert fi.nps_bad[0] == pytest.approx(-30.0)
        assert fi.nps_others[0] == pytest.approx(30.0)
        assert fi.n_bad[0] == 100
        assert fi.damaging[0]

    def test_failure_impact_equal_or_better_groups_is_not_damaging(self):
        fi = failure_impact([[50, 30, 20], [50, 30, 20]], [[50, 30, 20], [20, 30, 50]])
        assert fi.difference[0] == pytest.approx(0.0, abs=1e-12)
        assert fi.p_value[0] == pytest.approx(1.0)
        assert fi.difference[1] > 0  # significantly *better* after a bad experience is not damage
        assert fi.p_value[1] < 0.05
        assert not fi.damaging.any()

    def test_failure_impact_without_bad_experiences_is_untested(self):
        fi = failure_impact([[0, 0, 0]], [[50, 30, 20]])
        assert not fi.tested[0]
        assert not fi.damaging[0]
        assert math.isnan(fi.difference[0])

    def test_failure_impact_rejects_wrong_shape(self):
        with pytest.raises(ValueError, match="shape"):
            failure_impact([1, 2, 3], [1, 2, 3])


class TestQuadrants:
    def test_quadrants_with_given_thresholds_cover_all_four(self):
        pf = portfolio(
            relevance=[0.5, 0.5, 0.1, 0.1],
            significant=[True] * 4,
            reach=[0.9, 0.1, 0.9, 0.1],
            yearly_cost=[np.nan] * 4,
            impact=no_damage(4),
            relevance_threshold=0.3,
            reach_threshold=0.5,
        )
        assert list(pf.quadrant) == list(QUADRANTS)

    def test_quadrants_tie_at_median_goes_high(self):
        # medians: relevance 0.3, reach 0.5; touchpoint 2 sits exactly on both
        pf = portfolio(
            relevance=[0.1, 0.2, 0.3, 0.4, 0.5],
            significant=[True] * 5,
            reach=[0.9, 0.1, 0.5, 0.2, 0.8],
            yearly_cost=[np.nan] * 5,
            impact=no_damage(5),
        )
        assert pf.relevance_threshold == pytest.approx(0.3)
        assert pf.reach_threshold == pytest.approx(0.5)
        assert list(pf.quadrant) == ["hygiene", "reconsider", "core", "lever", "core"]
        assert pf.n == 5

    def test_quadrants_zero_relevance_is_never_high(self):
        pf = portfolio(
            relevance=[0.0, 0.0, 0.0, 0.2],
            significant=[False, False, False, True],
            reach=[0.5, 0.5, 0.5, 0.5],
            yearly_cost=[np.nan] * 4,
            impact=no_damage(4),
        )
        assert pf.relevance_threshold == 0.0
        assert list(pf.quadrant) == ["hygiene", "hygiene", "hygiene", "core"]

    def test_quadrants_negative_effect_uses_magnitude_and_missing_is_unplaced(self):
        pf = portfolio(
            relevance=[-0.5, 0.1, np.nan],
            significant=[True, True, False],
            reach=[0.2, 0.2, 0.9],
            yearly_cost=[np.nan] * 3,
            impact=no_damage(3),
            relevance_threshold=0.3,
            reach_threshold=0.5,
        )
        assert list(pf.quadrant) == ["lever", "reconsider", ""]
        assert pf.n == 2


class TestBudgetBurners:
    def test_cost_per_relevance_hand_values(self):
        pf = portfolio(
            relevance=[0.5, 0.0, 0.2, 0.4],
            significant=[True, False, True, True],
            reach=[0.5] * 4,
            yearly_cost=[1000.0, 500.0, np.nan, 0.0],
            impact=no_damage(4),
        )
        assert pf.cost_per_relevance[0] == pytest.approx(2000.0)
        assert pf.cost_per_relevance[1] == math.inf
        assert math.isnan(pf.cost_per_relevance[2])
        assert pf.cost_per_relevance[3] == 0.0

    def test_costly_irrelevant_touchpoint_with_failure_damage_is_not_a_burner(self):
        # touchpoints 0 and 1: costly, relevance 0 (insignificant); 1 hurts badly when it fails
        impact = failure_impact([[0, 0, 0], [20, 30, 50], [0, 0, 0]], np.tile([50, 30, 20], (3, 1)))
        pf = portfolio(
            relevance=[0.0, 0.0, 0.4],
            significant=[False, False, True],
            reach=[0.5, 0.5, 0.5],
            yearly_cost=[90_000.0, 90_000.0, 10_000.0],
            impact=impact,
        )
        assert list(pf.budget_burner) == [True, False, False]
        assert list(pf.keep_despite_low_relevance) == [False, True, False]

    def test_burners_need_cost_and_no_significant_relevance(self):
        # cost median 50,000: 0 high relevance, 1 high but insignificant, 2 low, 3 cheap and low
        pf = portfolio(
            relevance=[0.5, 0.5, 0.1, 0.1],
            significant=[True, False, True, False],
            reach=[0.5] * 4,
            yearly_cost=[80_000.0, 60_000.0, 50_000.0, 1_000.0],
            impact=no_damage(4),
            relevance_threshold=0.3,
        )
        assert pf.cost_threshold == pytest.approx(55_000.0)
        assert list(pf.budget_burner) == [False, True, False, False]
        pf = portfolio(
            relevance=[0.5, 0.5, 0.1, 0.1],
            significant=[True, False, True, False],
            reach=[0.5] * 4,
            yearly_cost=[80_000.0, 60_000.0, 50_000.0, 1_000.0],
            impact=no_damage(4),
            relevance_threshold=0.3,
            cost_threshold=20_000.0,
        )
        # a small but significant effect (index 2) is not a burner: it adds something, at a price
        assert list(pf.budget_burner) == [False, True, False, False]
        pf = portfolio(
            relevance=[0.5, 0.5, 0.1, 0.1],
            significant=[False, False, False, False],
            reach=[0.5] * 4,
            yearly_cost=[80_000.0, 60_000.0, 50_000.0, 1_000.0],
            impact=no_damage(4),
            relevance_threshold=0.3,
            cost_threshold=20_000.0,
        )
        assert list(pf.budget_burner) == [True, True, True, False]
        # 50,000 / 0.1 = 500,000 before 80,000 / 0.5 = 160,000 before 60,000 / 0.5 = 120,000
        assert list(pf.burner_order) == [2, 0, 1]

    def test_portfolio_rejects_reach_outside_unit_interval(self):
        with pytest.raises(ValueError, match="reach"):
            portfolio(relevance=[0.1], significant=[True], reach=[1.5], yearly_cost=[1.0], impact=no_damage(1))


class TestMomentsOfTruth:
    # total relevance 10; significant by size: 4 (0), 3 (2), 1 (4), 0.5 (1); 1.5 (3) is not significant
    REL = [4.0, 0.5, 3.0, 1.5, 1.0]
    SIG = [True, True, True, False, True]
    DES = [True, False, False, True, True]

    def test_moments_of_truth_smallest_significant_set_covering_80_percent(self):
        mot = moments_of_truth(relevance=self.REL, significant=self.SIG, designed=self.DES)
        assert list(mot.measured) == [True, False, True, False, True]  # 4 + 3 + 1 = 8 = 80 %
        assert mot.achieved == pytest.approx(0.8)
        assert list(mot.status) == ["confirmed", "", "undiscovered", "unconfirmed", "confirmed"]
        assert mot.total_relevance == pytest.approx(10.0)

    def test_moments_of_truth_exact_target_is_met_despite_rounding(self):
        # 0.3 + 0.3 = 0.6 covers exactly 80 % of 0.75, but 0.8 × 0.75 is 0.6000000000000001 in floating point
        mot = moments_of_truth(relevance=[0.3, 0.3, 0.15], significant=[True] * 3, designed=[False] * 3)
        assert list(mot.measured) == [True, True, False]

    def test_moments_of_truth_unreachable_coverage_takes_all_significant(self):
        mot = moments_of_truth(
            relevance=[-4.0, 3.0, 3.0], significant=[True, False, False], designed=[False] * 3, coverage=0.8
        )
        assert list(mot.measured) == [True, False, False]
        assert mot.achieved == pytest.approx(0.4)

    def test_moments_of_truth_rejects_coverage_outside_unit_interval(self):
        with pytest.raises(ValueError, match="coverage"):
            moments_of_truth(relevance=[1.0], significant=[True], designed=[True], coverage=0.0)


class TestPainPoints:
    def test_pain_points_interval_matches_newcombe_1998_examples(self):
        # Newcombe (1998), Stat Med 17:873, table II, method 10: 56/70 − 48/80 → (0.0524, 0.3339);
        # 9/10 − 3/10 → (0.1705, 0.8090). With two touchpoints each one's "rest" is the other.
        pp = pain_points(significant=[True, True], satisfied=[56, 48], rated=[70, 80])
        assert pp.difference[0] == pytest.approx(100 * (56 / 70 - 48 / 80))
        assert pp.low[0] == pytest.approx(5.24, abs=5e-3)
        assert pp.high[0] == pytest.approx(33.39, abs=5e-3)
        assert pp.low[1] == pytest.approx(-33.39, abs=5e-3)
        assert pp.high[1] == pytest.approx(-5.24, abs=5e-3)
        pp = pain_points(significant=[True, True], satisfied=[9, 3], rated=[10, 10])
        assert pp.low[0] == pytest.approx(17.05, abs=5e-3)
        assert pp.high[0] == pytest.approx(80.90, abs=5e-3)

    def test_pain_points_match_statsmodels_against_rest_of_journey(self):
        sat = np.array([30, 120, 45, 200])
        rated = np.array([80, 150, 60, 250])
        pp = pain_points(significant=[True, True, False, True], satisfied=sat, rated=rated)
        for i in range(4):
            s2, n2 = sat.sum() - sat[i], rated.sum() - rated[i]
            low, high = confint_proportions_2indep(sat[i], rated[i], s2, n2, method="newcomb", compare="diff")
            _, p = proportions_ztest([sat[i], s2], [rated[i], n2])
            assert pp.low[i] == pytest.approx(100 * low, abs=1e-9)
            assert pp.high[i] == pytest.approx(100 * high, abs=1e-9)
            assert pp.p_value[i] == pytest.approx(p, rel=1e-9)
        assert pp.journey_csat == pytest.approx(100 * 395 / 540)
        assert list(pp.below) == [True, False, False, False]  # 37.5 % against 79.3 % elsewhere
        assert list(pp.pain) == [True, False, False, False]

    def test_pain_points_below_without_significant_relevance_is_no_pain(self):
        pp = pain_points(significant=[False, True], satisfied=[30, 400], rated=[80, 500])
        assert pp.below[0]
        assert not pp.pain.any()

    def test_pain_points_single_bad_rating_is_not_certain(self):
        # the Wald comparison would give se 0 for 0/1 and z ≈ −63; the pooled test: z = −.7 / sqrt(.21 · 1.001)
        pp = pain_points(significant=[True, True], satisfied=[0, 700], rated=[1, 1000])
        _, p = proportions_ztest([0, 700], [1, 1000])
        assert pp.p_value[0] == pytest.approx(p)
        assert not pp.below[0]

    def test_pain_points_without_ratings_is_not_tested(self):
        pp = pain_points(significant=[True, True], satisfied=[0, 40], rated=[0, 50])
        assert math.isnan(pp.p_value[0])
        assert not pp.below[0]
        assert pp.n[0] == 0


class TestCrossJourneyPriority:
    def test_priority_weighted_sum_hand_case(self):
        # journeys of 300 and 100 customers → w = .75 / .25; touchpoint 1's effect is negative (−0.1)
        pr = cross_journey_priority(
            touchpoint_index=np.array([0, 0, 1, 2]),
            journey_index=np.array([0, 1, 0, 1]),
            relevance=[0.2, 0.4, -0.1, 0.8],
            relevance_low=[0.1, 0.2, -0.3, 0.5],
            relevance_high=[0.3, 0.6, 0.1, 1.1],
            journey_weight=[300, 100],
        )
        assert pr.priority == pytest.approx([0.25, 0.075, 0.2])
        assert pr.low == pytest.approx([0.125, 0.0, 0.125])
        assert pr.high == pytest.approx([0.375, 0.225, 0.275])
        assert list(pr.journeys) == [2, 1, 1]
        assert pr.weight_covered == pytest.approx([1.0, 0.75, 0.25])
        assert list(pr.rank) == [0, 2, 1]  # serving both journeys beats a big effect in the small one
        assert pr.n == 4

    def test_priority_touchpoint_without_rows_is_nan(self):
        pr = cross_journey_priority(
            touchpoint_index=np.array([0]),
            journey_index=np.array([0]),
            relevance=[0.2],
            relevance_low=[0.1],
            relevance_high=[0.3],
            journey_weight=[1.0],
            n_touchpoints=2,
        )
        assert math.isnan(pr.priority[1])
        assert list(pr.rank) == [0, 1]

    @pytest.mark.parametrize(
        ("touchpoints", "journeys", "weights", "message"),
        [
            ([0, 0], [1, 1], [1.0, 1.0], "more than once"),
            ([0, 1], [0, 1], [1.0, -1.0], "non-negative"),
            ([0, 1], [0, 1], [0.0, 0.0], "sum to more than 0"),
            ([0, 1], [0, 2], [1.0, 1.0], "outside"),
        ],
    )
    def test_priority_rejects_bad_input(self, touchpoints, journeys, weights, message):
        with pytest.raises(ValueError, match=message):
            cross_journey_priority(
                touchpoint_index=np.array(touchpoints),
                journey_index=np.array(journeys),
                relevance=[0.1, 0.2],
                relevance_low=[0.0, 0.1],
                relevance_high=[0.2, 0.3],
                journey_weight=weights,
            )
