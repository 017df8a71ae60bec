"""Planted effects: a journey generated with known effects of each touchpoint on NPS and conversion
(bench/scoring_data.py), scored by the service's scoring function. The scores must rank the planted
effects, name the costly no-effect touchpoints as budget burners and the rare strong ones as levers.
The truth is the generator's, not the code's: nothing here is computed by the code under test."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import stats as sps  # type: ignore[import-untyped]

from bench.scoring_data import Planted, planted_journey
from services.scoring.compute import ScoringConfig, compute_scores


@pytest.fixture(scope="module")
def planted() -> tuple[Planted, dict[str, Any]]:
    journey = planted_journey(customers=20_000, touchpoints=20, seed=3)
    return journey, compute_scores(journey.inputs, ScoringConfig(bootstrap=50))


def by_kind(planted: Planted, scores: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [t for t, k in zip(scores["touchpoints"], planted.kinds, strict=True) if k == kind]


class TestPlantedEffects:
    def test_relevance_ranks_the_planted_nps_effects(self, planted: tuple[Planted, dict[str, Any]]) -> None:
        truth, scores = planted
        relevance = [t["relevance"] for t in scores["touchpoints"]]
        rho = sps.spearmanr(truth.nps_truth, relevance).statistic
        assert rho >= 0.9, (rho, list(zip(truth.kinds, truth.nps_truth, relevance, strict=True)))

    def test_conversion_effects_rank_the_planted_ones(self, planted: tuple[Planted, dict[str, Any]]) -> None:
        truth, scores = planted
        effects = [t["conversion_effect"]["effect"] for t in scores["touchpoints"]]
        rho = sps.spearmanr(truth.conversion_truth, effects).statistic
        assert rho >= 0.9, (rho, list(zip(truth.kinds, truth.conversion_truth, effects, strict=True)))

    def test_costly_touchpoints_without_effect_are_the_budget_burners(
        self, planted: tuple[Planted, dict[str, Any]]
    ) -> None:
        truth, scores = planted
        burners = {t["touchpoint_id"] for t in by_kind(truth, scores, "burner")}
        assert {str(b) for b in scores["portfolio"]["budget_burners"]} == {str(b) for b in burners}

    def test_rare_strong_touchpoints_are_levers(self, planted: tuple[Planted, dict[str, Any]]) -> None:
        truth, scores = planted
        levers = by_kind(truth, scores, "lever")
        assert [t["quadrant"] for t in levers] == ["lever"] * len(levers)
        assert all(t["relevance_significant"] for t in levers)

    def test_designed_moments_of_truth_are_checked_against_the_data(
        self, planted: tuple[Planted, dict[str, Any]]
    ) -> None:
        truth, scores = planted
        assert {t["moment_of_truth"] for t in by_kind(truth, scores, "burner")} == {"unconfirmed"}
        assert {t["moment_of_truth"] for t in by_kind(truth, scores, "core")} == {"confirmed"}

    def test_markov_attribution_is_not_relevance(self, planted: tuple[Planted, dict[str, Any]]) -> None:
        """DESIGN §4: the removal effect follows reach; the burners, met widely, get Markov credit though
        they change nothing."""
        truth, scores = planted
        markov = next(a for a in scores["attribution"] if a["model"] == "markov")
        credit = np.array([markov["credit"][str(t["touchpoint_id"])] for t in scores["touchpoints"]])
        burner = np.array([k == "burner" for k in truth.kinds])
        assert credit[burner].min() > 0
