"""Attribution (DESIGN.md §4) against hand-derived numbers, DESIGN's published check, a brute-force Shapley
enumeration and a textbook re-solve of the Markov chain with each state removed."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from services.common.stats import Z
from services.scoring.analytics.attribution import (
    MODELS,
    Paths,
    attribute,
    attribute_all,
    collapse_repeats,
)

DAY = 86_400.0


def make_paths(journeys: list[tuple[list[int], bool]], times: list[list[float]] | None = None) -> Paths:
    """Paths from (touchpoints, converted) pairs; touches one day apart unless times are given."""
    lengths = [len(t) for t, _ in journeys]
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    touchpoints = np.array([tp for t, _ in journeys for tp in t], dtype=np.int64)
    if times is None:
        times = [[DAY * j for j in range(len(t))] for t, _ in journeys]
    flat_times = np.array([x for row in times for x in row], dtype=np.float64)
    converted = np.array([c for _, c in journeys], dtype=np.bool_)
    last = np.array([row[-1] if row else 0.0 for row in times], dtype=np.float64)
    return Paths(offsets, touchpoints, flat_times, converted, np.where(converted, last + DAY, np.nan))


def random_journeys(rng: np.random.Generator, *, m: int, p: int, max_len: int) -> list[tuple[list[int], bool]]:
    return [
        ([int(x) for x in rng.integers(0, p, size=rng.integers(1, max_len + 1))], bool(rng.random() < 0.5))
        for _ in range(m)
    ]


def textbook_markov(journeys: list[tuple[list[int], bool]], p: int) -> tuple[float, np.ndarray]:
    """P(conversion) and removal effects the usual way (Anderl et al. 2016): estimate the transition matrix,
    then for each touchpoint redirect every transition into it to null and solve the absorbing chain again."""
    start, conv, null = p, p + 1, p + 2
    counts = np.zeros((p + 3, p + 3))
    for touches, converted in journeys:
        collapsed = [k for k, _ in itertools.groupby(touches)]
        states = [start, *collapsed, conv if converted else null]
        for a, b in itertools.pairwise(states):
            counts[a, b] += 1
    rows = counts.sum(axis=1, keepdims=True)
    prob = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)

    def p_conversion(removed: int | None) -> float:
        matrix = prob.copy()
        if removed is not None:
            matrix[:, null] += matrix[:, removed]
            matrix[:, removed] = 0.0
        transient = list(range(p + 1))
        q = matrix[np.ix_(transient, transient)]
        absorbed = np.linalg.solve(np.eye(p + 1) - q, matrix[transient, conv])
        return float(absorbed[start])

    base = p_conversion(None)
    return base, np.array([1 - p_conversion(i) / base for i in range(p)])


class TestMarkov:
    def test_design_example_gives_published_numbers(self) -> None:
        # DESIGN §4: C1>C2>C3 converts, C1 and C2>C3 do not.
        paths = make_paths([([0, 1, 2], True), ([0], False), ([1, 2], False)])
        result = attribute(paths, 3, model="markov", bootstrap=0)
        assert result.conversion_probability == pytest.approx(1 / 3, abs=1e-12)
        assert result.removal_effect is not None
        np.testing.assert_allclose(result.removal_effect, [0.5, 1.0, 1.0], atol=1e-12)
        np.testing.assert_allclose(result.credit, [0.2, 0.4, 0.4], atol=1e-12)
        assert (result.conversions, result.paths) == (1, 3)

    def test_looping_paths_credit_exact_when_repeats_collapsed(self) -> None:
        # A>B>A>B>B>A, A>B>B>A>A, A>A, all converting: collapsed, A -> B or conversion with 1/2 each and
        # B -> A always, so removing A leaves nothing (RE 1) and removing B leaves 1/2 (RE 1/2): 2 and 1.
        # A simulation cut at the longest path gives about 2.10 / 0.90.
        paths = make_paths([([0, 1, 0, 1, 1, 0], True), ([0, 1, 1, 0, 0], True), ([0, 0], True)])
        result = attribute(paths, 2, model="markov", bootstrap=0)
        assert result.conversion_probability == pytest.approx(1.0, abs=1e-12)
        assert result.removal_effect is not None
        np.testing.assert_allclose(result.removal_effect, [1.0, 0.5], atol=1e-9)
        np.testing.assert_allclose(result.credit, [2.0, 1.0], atol=1e-9)

    def test_removal_effects_match_resolving_without_each_state(self) -> None:
        rng = np.random.default_rng(7)
        p = 6
        journeys = random_journeys(rng, m=80, p=p, max_len=7)
        base, expected = textbook_markov(journeys, p)
        result = attribute(make_paths(journeys), p, model="markov", bootstrap=0)
        assert result.conversion_probability == pytest.approx(base, abs=1e-12)
        assert result.removal_effect is not None
        np.testing.assert_allclose(result.removal_effect, expected, atol=1e-10)
        conversions = sum(c for _, c in journeys)
        np.testing.assert_allclose(result.credit, conversions * expected / expected.sum(), atol=1e-9)

    def test_unvisited_touchpoint_gets_nothing(self) -> None:
        paths = make_paths([([0, 2], True), ([2], False)])
        result = attribute(paths, 3, model="markov", bootstrap=0)
        assert result.removal_effect is not None
        assert result.removal_effect[1] == 0.0
        assert result.credit[1] == 0.0

    def test_no_conversion_leaves_effects_undefined(self) -> None:
        result = attribute(make_paths([([0, 1], False)]), 2, model="markov", bootstrap=0)
        assert result.conversion_probability == 0.0
        assert result.removal_effect is not None
        assert np.isnan(result.removal_effect).all()
        np.testing.assert_array_equal(result.credit, [0.0, 0.0])


class TestRuleModels:
    def test_linear_splits_each_path_equally(self) -> None:
        # A>B>C and A>C both convert: A 1/3 + 1/2, B 1/3, C 1/3 + 1/2.
        paths = make_paths([([0, 1, 2], True), ([0, 2], True)])
        result = attribute(paths, 3, model="linear", bootstrap=0)
        np.testing.assert_allclose(result.credit, [5 / 6, 1 / 3, 5 / 6], atol=1e-12)

    def test_first_and_last_credit_the_end_touches_of_converting_paths(self) -> None:
        paths = make_paths([([0, 1, 2], True), ([1, 2], True), ([2, 0], False), ([3], True)])
        first = attribute(paths, 4, model="first", bootstrap=0)
        last = attribute(paths, 4, model="last", bootstrap=0)
        np.testing.assert_array_equal(first.credit, [1, 1, 0, 1])
        np.testing.assert_array_equal(last.credit, [0, 0, 2, 1])

    def test_position_based_gives_forty_twenty_forty(self) -> None:
        # A>B>C>D: .4 / .1 / .1 / .4; E alone: 1; A>E: .5 each; B>C>B (not converting): nothing.
        paths = make_paths([([0, 1, 2, 3], True), ([4], True), ([0, 4], True), ([1, 2, 1], False)])
        result = attribute(paths, 5, model="position_based", bootstrap=0)
        np.testing.assert_allclose(result.credit, [0.9, 0.1, 0.1, 0.4, 1.5], atol=1e-12)

    def test_position_based_honours_other_weights(self) -> None:
        # (0.3, 0.4, 0.3) on A>B>C>D>E: .3 / .4/3 x3 / .3.
        paths = make_paths([([0, 1, 2, 3, 4], True)])
        result = attribute(paths, 5, model="position_based", position_weights=(0.3, 0.4, 0.3), bootstrap=0)
        np.testing.assert_allclose(result.credit, [0.3, 0.4 / 3, 0.4 / 3, 0.4 / 3, 0.3], atol=1e-12)

    def test_time_decay_halves_weight_per_half_life(self) -> None:
        # Touches 14, 7 and 0 days before converting, half-life 7 days: weights 1/4, 1/2, 1 -> 1/7, 2/7, 4/7.
        # A second path touched 1000 days before converting: 2^-143 alone would underflow nothing, still 1.
        paths = make_paths([([0, 1, 2], True), ([3], True)], times=[[0.0, 7 * DAY, 14 * DAY], [0.0]])
        paths = Paths(paths.offsets, paths.touchpoints, paths.times, paths.converted, np.array([14 * DAY, 1000 * DAY]))
        result = attribute(paths, 4, model="time_decay", half_life_days=7.0, bootstrap=0)
        np.testing.assert_allclose(result.credit, [1 / 7, 2 / 7, 4 / 7, 1.0], atol=1e-12)

    def test_time_decay_with_one_day_half_life(self) -> None:
        # Touches 3 and 1 days before converting, half-life 1 day: 1/8 and 1/2 -> 1/5 and 4/5.
        paths = make_paths([([0, 1], True)], times=[[0.0, 2 * DAY]])
        result = attribute(paths, 2, model="time_decay", half_life_days=1.0, bootstrap=0)
        np.testing.assert_allclose(result.credit, [0.2, 0.8], atol=1e-12)


class TestShapley:
    def test_shapley_hand_example(self) -> None:
        # v(S) counts converting paths inside S: {A,B} and {A} convert, {B,C} does not.
        # phi_A = 1/2 + 1, phi_B = 1/2, phi_C = 0. Repeats (A>B>A) do not change a path's set.
        paths = make_paths([([0, 1, 0], True), ([0], True), ([1, 2], False)])
        result = attribute(paths, 3, model="shapley", bootstrap=0)
        np.testing.assert_allclose(result.credit, [1.5, 0.5, 0.0], atol=1e-12)

    def test_shapley_matches_brute_force_enumeration_for_small_p(self) -> None:
        rng = np.random.default_rng(3)
        p = 5
        journeys = random_journeys(rng, m=40, p=p, max_len=6)
        sets = [frozenset(t) for t, c in journeys if c]

        def v(coalition: frozenset[int]) -> int:
            return sum(s <= coalition for s in sets)

        expected = np.zeros(p)
        for i in range(p):
            others = [j for j in range(p) if j != i]
            for size in range(p):
                weight = math.factorial(size) * math.factorial(p - size - 1) / math.factorial(p)
                for subset in itertools.combinations(others, size):
                    s = frozenset(subset)
                    expected[i] += weight * (v(s | {i}) - v(s))
        result = attribute(make_paths(journeys), p, model="shapley", bootstrap=0)
        np.testing.assert_allclose(result.credit, expected, atol=1e-12)
        assert "v(S)" in result.method


class TestCollapseRepeats:
    def test_collapse_keeps_first_time_of_each_run(self) -> None:
        # A A B B B A | A C C: the run of A that ends path 1 and the one that starts path 2 stay apart.
        paths = make_paths([([0, 0, 1, 1, 1, 0], True), ([0, 2, 2], False)], times=[[1, 2, 3, 4, 5, 6], [7, 8, 9]])
        collapsed = collapse_repeats(paths)
        np.testing.assert_array_equal(collapsed.offsets, [0, 3, 5])
        np.testing.assert_array_equal(collapsed.touchpoints, [0, 1, 0, 0, 2])
        np.testing.assert_array_equal(collapsed.times, [1, 3, 6, 7, 8])
        np.testing.assert_array_equal(collapsed.converted, paths.converted)


class TestBootstrap:
    def test_first_touch_interval_matches_poisson_count_variance(self) -> None:
        # 400 converting paths start at A: under Poisson(1) weights A's credit is a Poisson(400)-like sum,
        # sd 20, so the interval is about 400 +- 1.96 * 20. Percentiles of 400 replicates wobble by ~3.
        journeys = [([0, 1], True)] * 400 + [([1, 0], False)] * 100
        result = attribute(make_paths(journeys), 2, model="first", bootstrap=400, seed=11)
        assert result.low[0] == pytest.approx(400 - Z * 20, abs=9)
        assert result.high[0] == pytest.approx(400 + Z * 20, abs=9)
        np.testing.assert_array_equal([result.low[1], result.high[1]], [0.0, 0.0])
        assert result.replicates == 400

    def test_markov_interval_follows_resampled_conversions(self) -> None:
        # 50 identical converting paths A>B: every replicate splits its conversions (Poisson(50)) in half,
        # so each credit has sd sqrt(50) / 2.
        result = attribute(make_paths([([0, 1], True)] * 50), 2, model="markov", bootstrap=400, seed=5)
        half = Z * math.sqrt(50) / 2
        np.testing.assert_allclose(result.low, [25 - half] * 2, atol=2.0)
        np.testing.assert_allclose(result.high, [25 + half] * 2, atol=2.0)

    def test_no_bootstrap_gives_no_interval(self) -> None:
        result = attribute(make_paths([([0], True)]), 1, model="linear", bootstrap=0)
        assert np.isnan(result.low).all()
        assert np.isnan(result.high).all()
        assert "No bootstrap" in result.method


class TestAttributeAll:
    def test_every_model_shares_out_exactly_the_conversions(self) -> None:
        rng = np.random.default_rng(1)
        journeys = random_journeys(rng, m=300, p=8, max_len=9)
        conversions = sum(c for _, c in journeys)
        results = attribute_all(make_paths(journeys), 8, bootstrap=20)
        assert tuple(results) == MODELS
        for model, result in results.items():
            assert result.credit.sum() == pytest.approx(conversions, abs=1e-9), model
            assert (result.low <= result.credit + 1e-9).all(), model
            assert (result.credit <= result.high + 1e-9).all(), model
            assert (result.conversions, result.paths) == (conversions, 300)

    def test_single_model_call_equals_its_entry_in_all(self) -> None:
        rng = np.random.default_rng(2)
        paths = make_paths(random_journeys(rng, m=100, p=5, max_len=6))
        everything = attribute_all(paths, 5, bootstrap=30, seed=4)
        for model in ("time_decay", "markov"):
            alone = attribute(paths, 5, model=model, bootstrap=30, seed=4)
            np.testing.assert_array_equal(alone.credit, everything[model].credit)
            np.testing.assert_array_equal(alone.low, everything[model].low)
            np.testing.assert_array_equal(alone.high, everything[model].high)


class TestValidation:
    @pytest.mark.parametrize(
        ("journeys", "p", "message"),
        [
            ([([0], True), ([], False)], 2, "no touch"),
            ([([0, 3], True)], 3, "touchpoint indices"),
        ],
    )
    def test_rejects_paths_no_model_can_credit(self, journeys: list[tuple[list[int], bool]], p: int, message: str):
        with pytest.raises(ValueError, match=message):
            attribute(make_paths(journeys), p, model="linear")

    def test_rejects_touches_out_of_time_order(self) -> None:
        paths = make_paths([([0, 1], True), ([1, 0], True)], times=[[5.0, 6.0], [3.0, 2.0]])
        with pytest.raises(ValueError, match="time order"):
            attribute(paths, 2, model="last")

    def test_rejects_unknown_model(self) -> None:
        with pytest.raises(ValueError, match="unknown model"):
            attribute(make_paths([([0], True)]), 1, model="u_shaped")
