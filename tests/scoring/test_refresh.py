"""Scores follow their events from the tallies the consumers keep, without a refit: the refreshed
snapshot's counts are those a full recompute of the same facts reaches, and the kept tallies are
those counted from scratch."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from bench.scoring_data import planted_journey
from services.common.db import driver_connection
from services.scoring import tallies
from services.scoring.inputs import JourneyInputs, Scope, load_inputs
from services.scoring.readmodel import REFIT_KEY
from services.scoring.recompute import score_journey
from services.scoring.settings import ScoringSettings
from services.scoring.tally import tally_of
from tests.eventually import eventually
from tests.scoring.factories import CUSTOMERS, Stack, at, small_journey

# What follows from the counts alone (the rest is the fit's, carried until the next one).
COUNTED = ("reach", "reach_n", "csat", "ces")


def _only(inputs: JourneyInputs, keep: np.ndarray) -> JourneyInputs:
    """The inputs of the kept customers, as `load_inputs` would read them for those alone."""
    numbers = np.nonzero(keep)[0]
    renumber = np.full(inputs.n, -1)
    renumber[numbers] = np.arange(numbers.size)
    touches, answers = keep[inputs.touch_customer], keep[inputs.response_customer]
    return JourneyInputs(
        journey_id=inputs.journey_id,
        journey_key=inputs.journey_key,
        touchpoints=inputs.touchpoints,
        customers=inputs.customers[numbers],
        touch_customer=renumber[inputs.touch_customer[touches]],
        touch_touchpoint=inputs.touch_touchpoint[touches],
        touch_time=inputs.touch_time[touches],
        response_customer=renumber[inputs.response_customer[answers]],
        response_touchpoint=inputs.response_touchpoint[answers],
        response_nps=inputs.response_nps[answers],
        response_csat=inputs.response_csat[answers],
        response_ces=inputs.response_ces[answers],
        response_time=inputs.response_time[answers],
        conversion_time=inputs.conversion_time[numbers],
        conversion_value=0.0,
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_tally_is_the_sum_of_its_customers_tallies(seed: int) -> None:
    """What lets a consumer keep it: any split of the customers counts the same in sum."""
    inputs = planted_journey(customers=3_000, touchpoints=12, seed=seed).inputs
    keep = np.random.default_rng(seed).random(inputs.n) < 0.3
    whole, parts = tally_of(inputs), tally_of(_only(inputs, keep)) + tally_of(_only(inputs, ~keep))
    assert parts.to_vector() == whole.to_vector()
    assert whole.customers == inputs.n
    assert whole.reach_n.sum() > 0
    assert whole.bad.sum() > 0


async def _settled(scoring_app: FastAPI, workspace: str) -> None:
    """No scoring of the workspace is due or running."""

    async def idle() -> bool | None:
        async with scoring_app.state.sessionmaker() as session:
            due = await session.scalar(
                text("SELECT count(*) FROM dirty_journey WHERE workspace_id = :w"), {"w": workspace}
            )
        return True if due == 0 else None

    await eventually(idle, within=30, every=0.1)


async def _fitted_then_refreshed(
    stack: Stack, scoring_app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The small journey, scored once every change is; from then on changes of facts refresh its
    scores, and refit them only in an hour. Returns it and its scores."""
    built = await small_journey(stack)
    await _settled(scoring_app, stack.workspace)
    fitted = (await stack.scoring_get(f"/v1/journeys/{built['journey']['id']}/scores")).json()
    monkeypatch.setitem(scoring_app.state.sessionmaker.kw["info"], REFIT_KEY, 3600.0)
    return built, fitted


class TestRefresh:
    async def test_new_facts_are_scored_from_the_tallies_without_a_refit(
        self,
        stack: Stack,
        scoring_app: FastAPI,
        scoring_settings: ScoringSettings,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        built, fitted = await _fitted_then_refreshed(stack, scoring_app, monkeypatch)
        journey_id = built["journey"]["id"]

        survey = await stack.survey("follow-up")
        new = [f"n{i}" for i in range(6)]
        await stack.interactions(
            [{"event_id": f"{c}-ad", "customer": c, "touchpoint": "ad", "occurred_at": at(200 + i)} for i, c in
             enumerate(new)]
            + [{"event_id": "c001-support", "customer": "c001", "touchpoint": "support", "occurred_at": at(210)}]
        )  # fmt: skip
        await stack.outcomes([{"event_id": "n0-buy", "customer": "n0", "name": "purchase", "occurred_at": at(220)}])
        await stack.responses(
            [
                {"survey_id": survey["id"], "customer_external_id": c, "journey_key": "buy-a-bike",
                 "submitted_at": at(230 + i), "answers": {"recommend": 2 * i}}
                for i, c in enumerate(new)
            ]
            + [
                {"survey_id": survey["id"], "customer_external_id": "c001", "journey_key": "buy-a-bike",
                 "touchpoint_key": "support", "submitted_at": at(240), "answers": {"satisfied": 1, "effort": 6}}
            ]
        )  # fmt: skip
        counts = fitted["counts"]
        began = time.perf_counter()
        refreshed = await stack.scores(
            journey_id,
            fitted=False,
            customers=CUSTOMERS + len(new),
            interactions=counts["interactions"] + len(new) + 1,
            responses=counts["responses"] + len(new) + 1,
            conversions=counts["conversions"] + 1,
        )
        followed = time.perf_counter() - began
        assert refreshed["fitted_at"] == fitted["fitted_at"], "a refresh carries the fit"
        assert refreshed["fit_counts"] == fitted["counts"]
        assert refreshed["computed_at"] > fitted["computed_at"]
        assert followed < 10, f"the refresh followed the events after {followed:.1f} s"

        # The same facts, fitted from scratch: every count agrees, and so does the health.
        async with scoring_app.state.sessionmaker() as session:
            await session.execute(text("DELETE FROM dirty_journey WHERE workspace_id = :w"), {"w": stack.workspace})
            await session.commit()
        [full] = await score_journey(
            scoring_app.state.sessionmaker,
            workspace_id=stack.workspace,
            journey_id=journey_id,
            bootstrap=scoring_settings.bootstrap_replicates,
        )
        full_json = full.model_dump(mode="json")
        assert full_json["fitted_at"] != fitted["fitted_at"]
        assert refreshed["counts"] == full_json["counts"]
        assert refreshed["health"] == full_json["health"]
        for mine, theirs in zip(refreshed["touchpoints"], full_json["touchpoints"], strict=True):
            assert {k: mine[k] for k in COUNTED} == {k: theirs[k] for k in COUNTED}
            assert mine["failure_impact"]["n_bad"] == theirs["failure_impact"]["n_bad"]
        support = next(t for t in refreshed["touchpoints"] if t["key"] == "support")
        assert (
            support["failure_impact"]["n_bad"]
            > next(t for t in fitted["touchpoints"] if t["key"] == "support")["failure_impact"]["n_bad"]
        )

        # The tally the consumers kept is the one counted from every fact.
        async with scoring_app.state.sessionmaker() as session:
            kept = await tallies.read(session, workspace_id=stack.workspace, journey_id=journey_id)
            [(basis, tally)] = kept.values()
            inputs = await load_inputs(
                await driver_connection(session),
                workspace_id=stack.workspace,
                journey_id=journey_id,
                journey_key="buy-a-bike",
                journey_persona_id=None,
                scope=Scope(),
                conversions=["purchase", "conversion"],
            )
        assert basis == [t.id for t in inputs.touchpoints]
        assert tally.to_vector() == tally_of(inputs).to_vector()

    async def test_a_structural_change_refits_at_once(
        self, stack: Stack, scoring_app: FastAPI, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        built, fitted = await _fitted_then_refreshed(stack, scoring_app, monkeypatch)
        journey_id = built["journey"]["id"]
        shop = built["touchpoints"]["shop"]
        response = await stack.journey.patch(
            f"/v1/touchpoints/{shop['id']}",
            headers={**stack.headers, "If-Match": f'"{shop["version"]}"'},
            json={"yearly_cost": "99000.00"},
        )
        assert response.status_code == 200, response.text

        async def refitted() -> dict[str, Any] | None:
            body = (await stack.scoring_get(f"/v1/journeys/{journey_id}/scores")).json()
            return body if body["fitted_at"] != fitted["fitted_at"] else None

        scores = await eventually(refitted, within=30)
        by_key = {t["key"]: t for t in scores["touchpoints"]}
        assert by_key["shop"]["yearly_cost"] == "99000.00"
        assert scores["counts"] == fitted["counts"]

    async def test_a_young_journey_is_refitted_as_its_customers_arrive(
        self, stack: Stack, scoring_app: FastAPI, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Refits wait an hour here, yet a journey's first customers are fitted at once: a fit on fewer
        than half the customers counted now says little about them."""
        monkeypatch.setitem(scoring_app.state.sessionmaker.kw["info"], REFIT_KEY, 3600.0)
        journey, _ = await stack.build_journey("young", [("ad", "need", None, False), ("shop", "buy", None, True)])
        touches = [
            {"event_id": f"y{i}-{tp}", "customer": f"y{i}", "touchpoint": tp, "occurred_at": at(i)}
            for i in range(40)
            for tp in (["ad", "shop"] if i % 2 else ["ad"])
        ]
        await stack.interactions(touches)

        async def fitted_on_half() -> dict[str, Any] | None:
            body = (await stack.scoring_get(f"/v1/journeys/{journey['id']}/scores")).json()
            counted = body.get("counts", {}).get("customers")
            return body if counted == 40 and 2 * body["fit_counts"]["customers"] > counted else None

        scores = await eventually(fitted_on_half, within=30)
        assert scores["fit_counts"]["customers"] > 0
