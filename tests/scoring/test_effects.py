"""Exposure effects (DESIGN.md §4, relevance with exposure only) against external references.

- statsmodels is the independent implementation: it fits OLS by pinv/QR on the dense design and Logit by its
  own Newton solver, and computes average marginal effects with get_margeff (discrete change for 0/1
  columns, delta-method standard errors, on the probability scale: ours are percentage points, so / 100).
- Saturated one-touchpoint models have closed forms derivable by hand: the OLS slope is the difference of
  the two groups' NPS, the logit coefficient the log odds ratio (Woolf's standard error) and the marginal
  effect the difference of the two conversion rates with the two-proportion standard error.
- Planted effects on synthetic data: the intervals must cover the true values in at least 17 of 20 seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp  # type: ignore[import-untyped]
import statsmodels.api as sm  # type: ignore[import-untyped]

from services.common.stats import Z
from services.scoring.analytics.effects import (
    ALIASED,
    MET_BY_EVERYONE,
    NEVER_MET,
    NO_VARIANCE,
    SEPARATED,
    TOO_FEW,
    linear_exposure_effects,
    logistic_exposure_effects,
)


def _exposures(rng: np.random.Generator, n: int, reach: list[float]) -> np.ndarray:
    return (rng.random((n, len(reach))) < np.asarray(reach)).astype(np.float64)


def _nps_scores(rng: np.random.Generator, promoter: np.ndarray, detractor: np.ndarray) -> np.ndarray:
    u = rng.random(promoter.size)
    return np.where(u < promoter, 100.0, np.where(u < promoter + detractor, -100.0, 0.0))


@pytest.fixture(scope="module")
def survey() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n = 2,000 customers, 10 touchpoints with reach 10-50 %, NPS scores and conversions that depend on them."""
    rng = np.random.default_rng(13)
    x = _exposures(rng, 2000, [0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.3])
    shift = x @ np.array([0.10, 0.05, 0.0, -0.05, 0.03, 0.0, 0.02, -0.02, 0.04, 0.0])
    y = _nps_scores(rng, 0.35 + shift, 0.25 - shift / 2)
    eta = -1.0 + x @ np.array([0.8, 0.4, 0.0, -0.6, 0.3, 0.0, 0.2, -0.3, 0.5, 0.1])
    converted = rng.random(2000) < 1 / (1 + np.exp(-eta))
    return x, y, converted


class TestLinearParity:
    def test_classical_matches_statsmodels_ols(self, survey):
        x, y, _ = survey
        ours = linear_exposure_effects(sp.csr_matrix(x), y, cov_type="classical")
        ref = sm.OLS(y, sm.add_constant(x)).fit()
        ci = ref.conf_int()
        np.testing.assert_allclose(ours.coef, ref.params[1:], rtol=0, atol=1e-6)
        np.testing.assert_allclose(ours.effect, ref.params[1:], rtol=0, atol=1e-6)
        np.testing.assert_allclose(ours.coef_se, ref.bse[1:], rtol=0, atol=1e-6)
        np.testing.assert_allclose(ours.low, ci[1:, 0], rtol=0, atol=1e-6)
        np.testing.assert_allclose(ours.high, ci[1:, 1], rtol=0, atol=1e-6)
        np.testing.assert_allclose(ours.p_value, ref.pvalues[1:], rtol=0, atol=1e-9)
        assert ours.n == ours.n_used == 2000
        assert ours.estimable.all()

    def test_hc1_matches_statsmodels_ols_hc1(self, survey):
        x, y, _ = survey
        ours = linear_exposure_effects(sp.csr_matrix(x), y)  # HC1 is the default
        ref = sm.OLS(y, sm.add_constant(x)).fit(cov_type="HC1", use_t=True)
        ci = ref.conf_int()
        np.testing.assert_allclose(ours.coef_se, ref.bse[1:], rtol=0, atol=1e-6)
        np.testing.assert_allclose(ours.low, ci[1:, 0], rtol=0, atol=1e-6)
        np.testing.assert_allclose(ours.high, ci[1:, 1], rtol=0, atol=1e-6)
        np.testing.assert_allclose(ours.p_value, ref.pvalues[1:], rtol=0, atol=1e-9)
        assert "HC1" in ours.method

    def test_exposure_counts_count_as_met(self, survey):
        x, y, _ = survey
        counts = x * np.random.default_rng(1).integers(1, 4, size=x.shape)  # met 1-3 times
        ours = linear_exposure_effects(sp.csr_matrix(counts), y, cov_type="classical")
        ref = sm.OLS(y, sm.add_constant((counts > 0).astype(float))).fit()
        np.testing.assert_allclose(ours.coef, ref.params[1:], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(ours.n_exposed, (counts > 0).sum(axis=0))


class TestLogisticParity:
    def test_coefficients_match_statsmodels_logit(self, survey):
        x, _, converted = survey
        ours = logistic_exposure_effects(sp.csr_matrix(x), converted)
        ref = sm.Logit(converted.astype(float), sm.add_constant(x)).fit(disp=0)
        np.testing.assert_allclose(ours.coef, ref.params[1:], rtol=0, atol=1e-5)
        np.testing.assert_allclose(ours.coef_se, ref.bse[1:], rtol=0, atol=1e-5)
        assert ours.estimable.all()

    def test_average_marginal_effects_match_get_margeff(self, survey):
        x, _, converted = survey
        ours = logistic_exposure_effects(sp.csr_matrix(x), converted)
        ref = sm.Logit(converted.astype(float), sm.add_constant(x)).fit(disp=0)
        margeff = ref.get_margeff(at="overall", method="dydx", dummy=True)  # probabilities, not percent
        ci = margeff.conf_int()
        np.testing.assert_allclose(ours.effect / 100, margeff.margeff, rtol=0, atol=1e-4)
        np.testing.assert_allclose((ours.high - ours.low) / (2 * Z) / 100, margeff.margeff_se, rtol=0, atol=1e-4)
        np.testing.assert_allclose(ours.low / 100, ci[:, 0], rtol=0, atol=1e-4)
        np.testing.assert_allclose(ours.high / 100, ci[:, 1], rtol=0, atol=1e-4)
        np.testing.assert_allclose(ours.p_value, margeff.pvalues, rtol=0, atol=1e-6)
        # far tighter than the brief asks: the same analytic Jacobian, not an approximation
        np.testing.assert_allclose(ours.effect / 100, margeff.margeff, rtol=1e-9, atol=1e-12)


class TestSaturatedCases:
    """One touchpoint: the model is saturated and every number has a closed form."""

    def test_linear_slope_is_the_difference_of_the_two_groups_nps(self):
        met = np.array([100.0] * 6 + [0.0] * 2 + [-100.0] * 2)  # NPS 40
        unmet = np.array([100.0] * 3 + [0.0] * 3 + [-100.0] * 4)  # NPS -10
        y = np.concatenate([met, unmet])
        x = sp.csr_matrix(np.r_[np.ones(10), np.zeros(10)][:, None])
        ours = linear_exposure_effects(x, y, cov_type="classical")
        pooled = (((met - met.mean()) ** 2).sum() + ((unmet - unmet.mean()) ** 2).sum()) / (20 - 2)
        se = math.sqrt(pooled * (1 / 10 + 1 / 10))
        assert ours.effect[0] == pytest.approx(50.0, abs=1e-9)
        assert ours.coef_se[0] == pytest.approx(se, rel=1e-12)
        t = 2.10092204024096  # t(0.975, 18), from tables
        assert ours.low[0] == pytest.approx(50 - t * se, abs=1e-8)

    def test_logistic_effect_is_the_difference_of_conversion_rates(self):
        # met: 30 of 40 converted (75 %); not met: 20 of 80 (25 %)
        x = sp.csr_matrix(np.r_[np.ones(40), np.zeros(80)][:, None])
        converted = np.r_[np.ones(30), np.zeros(10), np.ones(20), np.zeros(60)].astype(bool)
        ours = logistic_exposure_effects(x, converted)
        assert ours.coef[0] == pytest.approx(math.log(9), abs=1e-9)  # odds 3 against 1/3
        assert ours.coef_se[0] == pytest.approx(math.sqrt(1 / 30 + 1 / 10 + 1 / 20 + 1 / 60), rel=1e-9)
        se = math.sqrt(0.75 * 0.25 / 40 + 0.25 * 0.75 / 80)
        assert ours.effect[0] == pytest.approx(50.0, abs=1e-7)
        assert ours.low[0] == pytest.approx(100 * (0.5 - Z * se), abs=1e-7)
        assert ours.high[0] == pytest.approx(100 * (0.5 + Z * se), abs=1e-7)


class TestPlantedEffects:
    def test_linear_intervals_cover_planted_nps_effects(self):
        promoter = np.array([0.10, 0.05, 0.0, -0.05, 0.03, 0.0])
        detractor = np.array([-0.05, 0.0, 0.0, 0.05, -0.03, 0.0])
        truth = 100 * (promoter - detractor)  # NPS points: 15, 5, 0, -10, 6, 0
        covered = np.zeros(6, dtype=int)
        estimates = []
        for seed in range(20):
            rng = np.random.default_rng(seed)
            x = _exposures(rng, 4000, [0.3, 0.2, 0.4, 0.25, 0.5, 0.1])
            y = _nps_scores(rng, 0.30 + x @ promoter, 0.30 + x @ detractor)
            res = linear_exposure_effects(sp.csr_matrix(x), y)
            covered += (res.low <= truth) & (truth <= res.high)
            estimates.append(res.effect)
        assert (covered >= 17).all(), covered
        # unbiased: the 20-seed mean within 3 standard errors of the truth
        spread = np.std(estimates, axis=0, ddof=1) / math.sqrt(20)
        assert (np.abs(np.mean(estimates, axis=0) - truth) <= 3 * spread).all()

    def test_logistic_intervals_cover_planted_effects(self):
        beta = np.array([0.8, 0.4, 0.0, -0.6, 0.3, 0.0])
        coef_covered = np.zeros(6, dtype=int)
        ame_covered = np.zeros(6, dtype=int)
        for seed in range(20):
            rng = np.random.default_rng(100 + seed)
            x = _exposures(rng, 4000, [0.3, 0.2, 0.4, 0.25, 0.5, 0.1])
            converted = rng.random(4000) < 1 / (1 + np.exp(-(-1.0 + x @ beta)))
            res = logistic_exposure_effects(sp.csr_matrix(x), converted)
            coef_covered += (res.coef - Z * res.coef_se <= beta) & (beta <= res.coef + Z * res.coef_se)
            # the true average marginal effect on these customers, from the true coefficients
            true_ame = np.empty(6)
            for k in range(6):
                on, off = x.copy(), x.copy()
                on[:, k], off[:, k] = 1, 0
                true_ame[k] = 100 * np.mean(1 / (1 + np.exp(-(-1 + on @ beta))) - 1 / (1 + np.exp(-(-1 + off @ beta))))
            ame_covered += (res.low <= true_ame) & (true_ame <= res.high)
        assert (coef_covered >= 17).all(), coef_covered
        assert (ame_covered >= 17).all(), ame_covered


class TestNotEstimable:
    def test_never_met_and_always_met_are_not_estimable(self, survey):
        x, y, converted = survey
        wide = np.column_stack([x[:, :3], np.zeros(2000), x[:, 3:], np.ones(2000)])  # columns 3 and 11
        for res, ref in (
            (linear_exposure_effects(sp.csr_matrix(wide), y, cov_type="classical"), sm.OLS(y, sm.add_constant(x))),
            (logistic_exposure_effects(sp.csr_matrix(wide), converted), sm.Logit(converted * 1.0, sm.add_constant(x))),
        ):
            assert res.reason[3] == NEVER_MET
            assert res.reason[11] == MET_BY_EVERYONE
            assert not res.estimable[[3, 11]].any()
            assert np.isnan(res.effect[[3, 11]]).all()
            assert np.isnan(res.low[[3, 11]]).all()
            assert res.n_exposed[3] == 0
            assert res.n_exposed[11] == 2000
            # the others are the model without the two columns
            fit = ref.fit(disp=0) if isinstance(ref, sm.Logit) else ref.fit()
            np.testing.assert_allclose(np.delete(res.coef, [3, 11]), fit.params[1:], atol=1e-6)

    def test_aliased_columns_are_not_estimable(self, survey):
        x, y, converted = survey
        x = x.copy()
        x[:, 1] *= 1 - x[:, 0]  # touchpoints 0 and 1 never met together, so their sum is 0/1
        a, b = x[:, 0], x[:, 1]
        aliased = np.column_stack([x, a, 1 - a, a + b])  # a duplicate, a complement, a sum
        for res in (
            linear_exposure_effects(sp.csr_matrix(aliased), y, cov_type="classical"),
            logistic_exposure_effects(sp.csr_matrix(aliased), converted),
        ):
            assert res.reason[10:] == (ALIASED, ALIASED, ALIASED)
            assert res.estimable[:10].all()
            assert not res.estimable[10:].any()
            assert np.isnan(res.coef_se[10:]).all()
        ref = sm.OLS(y, sm.add_constant(x)).fit()
        res = linear_exposure_effects(sp.csr_matrix(aliased), y, cov_type="classical")
        np.testing.assert_allclose(res.coef[:10], ref.params[1:], atol=1e-6)
        np.testing.assert_allclose(res.coef_se[:10], ref.bse[1:], atol=1e-6)

    @pytest.mark.filterwarnings("ignore::statsmodels.tools.sm_exceptions.ConvergenceWarning")
    def test_separated_touchpoint_is_set_aside_with_its_customers(self, survey):
        x, _, converted = survey
        rng = np.random.default_rng(5)
        rare = (rng.random(2000) < 0.02).astype(float)  # ~40 customers, every one of them converted
        converted = converted | (rare == 1)
        res = logistic_exposure_effects(sp.csr_matrix(np.column_stack([x, rare])), converted)
        assert res.reason[10] == SEPARATED
        assert not res.estimable[10]
        assert np.isnan(res.effect[10])
        assert res.n_used == 2000 - int(rare.sum())
        # the likelihood's limit as that coefficient goes to infinity: the fit without those customers
        keep = rare == 0
        ref = sm.Logit(converted[keep] * 1.0, sm.add_constant(x[keep])).fit(disp=0)
        np.testing.assert_allclose(res.coef[:10], ref.params[1:], atol=1e-5)
        np.testing.assert_allclose(res.coef_se[:10], ref.bse[1:], atol=1e-5)
        statsmodels_unbounded = sm.Logit(converted * 1.0, sm.add_constant(np.column_stack([x, rare]))).fit(disp=0)
        assert statsmodels_unbounded.params[-1] > 10  # what an unguarded fit reports: an absurd odds ratio

    def test_separation_by_two_touchpoints_gives_no_absurd_numbers(self, survey):
        x, _, converted = survey
        rng = np.random.default_rng(6)
        j, k = (rng.random(2000) < 0.05).astype(float), (rng.random(2000) < 0.05).astype(float)
        converted = converted.copy()
        converted[(j == 1) & (k == 0)] = True  # j without k always converts, k without j never does,
        converted[(k == 1) & (j == 0)] = False  # both together sometimes: beta_j -> inf, beta_k -> -inf
        both = np.flatnonzero((j == 1) & (k == 1))
        assert both.size >= 2
        converted[both] = np.arange(both.size) % 2 == 0
        res = logistic_exposure_effects(sp.csr_matrix(np.column_stack([x, j, k])), converted)
        assert res.reason[10:] == (SEPARATED, SEPARATED)
        assert res.estimable[:10].all()
        assert (np.abs(res.coef[:10]) < 3).all()
        assert (res.low[:10] >= -100).all()
        assert (res.high[:10] <= 100).all()
        ref = sm.Logit(converted * 1.0, sm.add_constant(x)).fit(disp=0)  # refitted without the two
        np.testing.assert_allclose(res.coef[:10], ref.params[1:], atol=1e-5)

    def test_outcome_without_variance_is_not_estimable(self, survey):
        x, _, _ = survey
        lin = linear_exposure_effects(sp.csr_matrix(x), np.full(2000, 100.0))
        logit = logistic_exposure_effects(sp.csr_matrix(x), np.ones(2000, dtype=bool))
        for res in (lin, logit):
            assert not res.estimable.any()
            assert np.isnan(res.effect).all()
            assert set(res.reason) == {NO_VARIANCE}
            assert res.n == 2000

    def test_too_few_customers_is_not_estimable(self):
        x = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 1, 1, 0], [1, 1, 0, 1], [0, 0, 1, 1]], dtype=float))
        lin = linear_exposure_effects(x, np.array([100.0, 0.0, -100.0, 100.0]))
        assert not lin.estimable.any()
        assert set(lin.reason) == {TOO_FEW}
        logit = logistic_exposure_effects(x[:2], np.array([True, False]))
        assert not logit.estimable.any()
        assert np.isnan(logit.coef).all()

    def test_nobody_met_anything_reports_every_touchpoint(self):
        x = sp.csr_matrix((100, 3))
        y = np.r_[np.ones(50), np.zeros(50)]
        for res in (linear_exposure_effects(x, 100 * y), logistic_exposure_effects(x, y == 1)):
            assert res.reason == (NEVER_MET, NEVER_MET, NEVER_MET)
            assert np.isnan(res.effect).all()
            np.testing.assert_array_equal(res.n_exposed, [0, 0, 0])

    def test_mismatched_lengths_are_rejected(self):
        with pytest.raises(ValueError, match="rows"):
            linear_exposure_effects(sp.csr_matrix(np.eye(3)), np.zeros(4))
        with pytest.raises(ValueError, match="rows"):
            logistic_exposure_effects(sp.csr_matrix(np.eye(3)), np.zeros(2, dtype=bool))
