"""Metric values against published or hand-computed numbers (DESIGN.md §4)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tests.feedback.factories import FeedbackApi

JAN = "2025-01-{:02d}T10:00:00Z"
FEB = "2025-02-{:02d}T10:00:00Z"


def nps_items(
    survey_id: str, promoters: int, passives: int, detractors: int, at: str, **extra: Any
) -> list[dict[str, Any]]:
    scores = [10] * promoters + [8] * passives + [3] * detractors
    return [
        {"survey_id": survey_id, "answers": {"recommend": s}, "submitted_at": at.format(1 + i % 28), **extra}
        for i, s in enumerate(scores)
    ]


class TestNps:
    async def test_published_vector_50_30_20(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        await api.bulk(nps_items(survey["id"], 50, 30, 20, JAN))
        result = await api.metric(n=100)
        overall = result["overall"]
        assert (result["source"], result["rollup_level"]) == ("projection", "month")
        assert result["as_of"] is not None
        assert (overall["n"], overall["promoters"], overall["passives"], overall["detractors"]) == (100, 50, 30, 20)
        assert overall["value"] == pytest.approx(30.0)
        assert overall["adjusted"] == pytest.approx(29.126, abs=5e-4)
        assert overall["interval_low"] == pytest.approx(14.051, abs=5e-4)
        assert overall["interval_high"] == pytest.approx(44.201, abs=5e-4)
        raw = await api.ok("/v1/metrics/nps", params={"source": "raw"})
        assert raw["source"] == "raw"
        assert raw["overall"] == overall
        assert datetime.fromisoformat(raw["as_of"]) >= datetime.fromisoformat(result["as_of"])  # the read time

    async def test_all_promoters_clips_upper_bound(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        await api.bulk(nps_items(survey["id"], 10, 0, 0, JAN))
        overall = (await api.metric(n=10))["overall"]
        assert overall["adjusted"] == pytest.approx(76.923, abs=5e-4)
        assert overall["interval_high"] == 100.0
        assert overall["value"] == 100.0

    async def test_nps_spans_surveys_and_groups_by_touchpoint(self, api: FeedbackApi) -> None:
        a = await api.survey("a", target={"type": "touchpoint", "touchpoint_key": "shop"})
        b = await api.survey("b", target={"type": "touchpoint", "touchpoint_key": "hotline"})
        await api.bulk(nps_items(a["id"], 3, 0, 1, JAN) + nps_items(b["id"], 1, 0, 3, JAN))
        result = await api.metric(n=8, group_by="touchpoint")
        assert result["overall"]["value"] == 0.0  # across both surveys, not an average of per-survey values
        by_tp = {g["group"]["touchpoint"]: g["value"] for g in result["groups"]}
        assert by_tp == {"hotline": -50.0, "shop": 50.0}

    async def test_channel_and_metadata_filters_use_raw_table(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        await api.bulk(
            nps_items(survey["id"], 2, 0, 0, JAN, channel="web", metadata={"plan": "gold"})
            + nps_items(survey["id"], 0, 0, 2, JAN, channel="phone", metadata={"plan": "basic"})
        )
        web = await api.ok("/v1/metrics/nps", params={"channel": "web"})
        assert (web["source"], web["overall"]["n"], web["overall"]["value"]) == ("raw", 2, 100.0)
        gold = await api.ok("/v1/metrics/nps", params={"metadata": "plan:basic"})
        assert (gold["overall"]["n"], gold["overall"]["value"]) == (2, -100.0)
        grouped = await api.ok("/v1/metrics/nps", params={"group_by": "metadata.plan"})
        assert {g["group"]["metadata.plan"]: g["n"] for g in grouped["groups"]} == {"basic": 2, "gold": 2}
        half_day = await api.ok("/v1/metrics/nps", params={"since": "2025-01-01T12:00:00Z"})
        assert half_day["source"] == "raw"

    async def test_group_by_month_and_time_window(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        await api.bulk(nps_items(survey["id"], 1, 0, 0, JAN) + nps_items(survey["id"], 0, 0, 3, FEB))
        result = await api.metric(n=4, group_by="month")
        assert [(g["group"]["month"], g["n"]) for g in result["groups"]] == [("2025-01-01", 1), ("2025-02-01", 3)]
        feb = await api.ok("/v1/metrics/nps", params={"since": "2025-02-01T00:00:00Z", "until": "2025-03-01T00:00:00Z"})
        assert (feb["source"], feb["rollup_level"], feb["overall"]["n"]) == ("projection", "month", 3)
        # FEB puts responses on days 1-3 of February: a window from the 2nd needs the daily rollup
        part = await api.ok("/v1/metrics/nps", params={"since": "2025-02-02T00:00:00Z"})
        assert (part["rollup_level"], part["overall"]["n"]) == ("day", 2)
        by_day = await api.ok("/v1/metrics/nps", params={"group_by": "day"})
        assert by_day["rollup_level"] == "day"
        assert [g["n"] for g in by_day["groups"]] == [1, 1, 1, 1]

    async def test_period_comparison_by_hand(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        await api.bulk(nps_items(survey["id"], 20, 30, 50, JAN) + nps_items(survey["id"], 50, 30, 20, FEB))
        await api.metric(n=200)
        result = await api.ok(
            "/v1/metrics/nps",
            params={
                "since": "2025-02-01",
                "until": "2025-03-01",
                "compare_since": "2025-01-01",
                "compare_until": "2025-02-01",
            },
        )
        comparison = result["overall"]["comparison"]
        # previous: adjusted −29.126 (se 7.6915), current: 29.126 (se 7.6915); Δ / sqrt(se₁² + se₂²)
        assert comparison["previous"]["adjusted"] == pytest.approx(-29.126, abs=5e-4)
        assert comparison["difference"] == pytest.approx(58.2524, abs=5e-4)
        assert comparison["statistic"] == pytest.approx(5.35534, abs=1e-4)
        assert comparison["interval_low"] == pytest.approx(36.9330, abs=5e-4)
        assert comparison["interval_high"] == pytest.approx(79.5718, abs=5e-4)
        assert comparison["p_value"] == pytest.approx(8.539e-8, rel=1e-3)

    async def test_other_workspace_sees_no_responses(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        await api.bulk(nps_items(survey["id"], 5, 0, 0, JAN))
        await api.metric(n=5)  # counted: the other workspace's answer comes after
        other = await api.other().ok("/v1/metrics/nps")
        assert other["overall"]["n"] == 0
        assert other["overall"]["value"] is None
        assert other["as_of"] is None  # no event of that workspace applied yet


class TestCsatCes:
    async def test_csat_wilson_interval_8_of_10(self, api: FeedbackApi) -> None:
        survey = await api.survey(
            kind="csat", questions=[{"key": "sat", "type": "rating", "required": True, "text": {"en": "Satisfied?"}}]
        )
        scores = [5, 5, 4, 4, 4, 5, 4, 5, 2, 3]
        await api.bulk([{"survey_id": survey["id"], "answers": {"sat": s}} for s in scores])
        overall = (await api.metric("csat", n=10))["overall"]
        # Wilson 95 % for 8/10: (0.4902, 0.9433) — the textbook example
        assert (overall["n"], overall["satisfied"], overall["value"]) == (10, 8, 80.0)
        assert overall["interval_low"] == pytest.approx(49.016, abs=1e-3)
        assert overall["interval_high"] == pytest.approx(94.332, abs=1e-3)

    async def test_ces_t_interval(self, api: FeedbackApi) -> None:
        survey = await api.survey(
            kind="ces", questions=[{"key": "effort", "type": "ces", "required": True, "text": {"en": "Easy?"}}]
        )
        await api.bulk([{"survey_id": survey["id"], "answers": {"effort": s}} for s in [2, 3, 4, 5, 6]])
        overall = (await api.metric("ces", n=5))["overall"]
        # mean 4, s = sqrt(2.5), se = 0.70711, t(0.975, 4) = 2.776445 → 4 ± 1.963243
        assert (overall["n"], overall["value"]) == (5, 4.0)
        assert overall["interval_low"] == pytest.approx(2.036757, abs=1e-5)
        assert overall["interval_high"] == pytest.approx(5.963243, abs=1e-5)


class TestValidation:
    async def test_unknown_group_is_422(self, api: FeedbackApi) -> None:
        response = await api.get("/v1/metrics/nps", params={"group_by": "colour"})
        assert response.status_code == 422
        assert "colour" in response.json()["detail"]

    async def test_empty_window_is_422(self, api: FeedbackApi) -> None:
        response = await api.get("/v1/metrics/nps", params={"since": "2025-02-01", "until": "2025-01-01"})
        assert response.status_code == 422
