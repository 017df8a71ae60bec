from __future__ import annotations

from typing import Any

from tests.feedback.factories import FeedbackApi
from tests.eventually import eventually


async def cases_of(api: FeedbackApi, **params: Any) -> list[dict[str, Any]]:
    return (await api.ok("/v1/cases", params=params))["items"]  # type: ignore[no-any-return]


class TestRules:
    async def test_default_rule_opens_case_for_detractor(self, api: FeedbackApi) -> None:
        survey = await api.survey(target={"type": "touchpoint", "touchpoint_key": "hotline"})
        bad = await api.respond(survey["id"], {"recommend": 6}, customer_external_id="C-9")
        await api.respond(survey["id"], {"recommend": 7})
        cases = await cases_of(api)
        assert len(cases) == 1
        case = cases[0]
        assert (case["response_id"], case["status"], case["touchpoint_key"]) == (bad["id"], "open", "hotline")
        assert case["customer_external_id"] == "C-9"
        assert "NPS 6 ≤ 6" in case["reason"]
        assert case["due_at"] is not None

    async def test_workspace_rules_replace_default(self, api: FeedbackApi) -> None:
        survey = await api.survey(
            kind="csat",
            questions=[{"key": "sat", "type": "rating", "required": True, "text": {"en": "?"}}],
            target={"type": "touchpoint", "touchpoint_key": "store"},
        )
        nps_survey = await api.survey("nps-one")
        rule = await api.created(
            "/v1/loop-rules",
            {
                "name": "Unhappy in store",
                "metric": "csat",
                "max_score": 2,
                "touchpoint_key": "store",
                "assignee": "ann",
            },
        )
        await api.respond(survey["id"], {"sat": 2})
        await api.respond(survey["id"], {"sat": 3})
        await api.respond(nps_survey["id"], {"recommend": 0})  # the default rule is off now
        cases = await cases_of(api)
        assert [(c["rule_id"], c["assignee"]) for c in cases] == [(rule["id"], "ann")]

    async def test_rule_above_scale_is_422(self, api: FeedbackApi) -> None:
        response = await api.post("/v1/loop-rules", json={"name": "x", "metric": "csat", "max_score": 9})
        assert response.status_code == 422

    async def test_theme_rule_opens_case_after_analysis(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        await api.created(
            "/v1/loop-rules", {"name": "Price complaints", "metric": None, "max_score": None, "theme": "price"}
        )
        hit = await api.respond(survey["id"], {"recommend": 9}, comment="Good, but far too expensive.")
        await api.respond(survey["id"], {"recommend": 9}, comment="Lovely staff.")
        cases = await eventually(lambda: cases_of(api))
        assert [c["response_id"] for c in cases] == [hit["id"]]
        assert "price" in cases[0]["reason"]


class TestCases:
    async def test_case_workflow_keeps_history(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        await api.respond(survey["id"], {"recommend": 2})
        case = (await cases_of(api))[0]
        url = f"/v1/cases/{case['id']}"
        moved = await api.patch(url, json={"status": "in_progress", "assignee": "bob"})
        assert moved.status_code == 200, moved.text
        noted = await api.created(f"{url}/notes", {"text": "Called the customer."})
        assert noted["history"][-1]["note"] == "Called the customer."
        closed = await api.patch(url, json={"status": "closed"})
        assert closed.json()["status"] == "closed"
        wrong = await api.patch(url, json={"status": "in_progress"})
        assert wrong.status_code == 422
        history = (await api.ok(url))["history"]
        assert [h["action"] for h in history] == ["opened", "updated", "note", "updated"]
        assert history[1]["changes"]["status"] == {"from": "open", "to": "in_progress"}
        assert (await cases_of(api, status="closed"))[0]["id"] == case["id"]

    async def test_case_by_hand_and_one_per_response(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        response = await api.respond(survey["id"], {"recommend": 9})
        case = await api.created("/v1/cases", {"response_id": response["id"], "assignee": "eve", "note": "VIP"})
        assert case["assignee"] == "eve"
        again = await api.post("/v1/cases", json={"response_id": response["id"]})
        assert again.status_code == 409

    async def test_other_workspace_cannot_see_case(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        await api.respond(survey["id"], {"recommend": 0})
        case = (await cases_of(api))[0]
        other = api.other()
        assert (await other.get(f"/v1/cases/{case['id']}")).status_code == 404
        assert (await other.patch(f"/v1/cases/{case['id']}", json={"status": "closed"})).status_code == 404
        assert await cases_of(other) == []


class TestComments:
    async def test_sentiment_and_themes_in_both_languages(self, api: FeedbackApi) -> None:
        survey = await api.survey(target={"type": "touchpoint", "touchpoint_key": "delivery"})
        await api.respond(survey["id"], {"recommend": 10}, comment="Fast delivery and very friendly staff, thanks!")
        await api.respond(
            survey["id"], {"recommend": 2}, comment="Die Lieferung war nicht pünktlich, eine Katastrophe."
        )
        await api.respond(survey["id"], {"recommend": 3}, comment="Viel zu teuer und der Mitarbeiter war unfreundlich.")

        async def summary() -> dict[str, Any] | None:
            body = await api.ok("/v1/comments/summary", params={"group_by": "touchpoint"})
            return body if body["pending"] == 0 and body["groups"] else None

        body = await eventually(summary)
        group = body["groups"][0]
        assert (group["group"], group["comments"], group["positive"], group["negative"]) == ("delivery", 3, 1, 2)
        themes = {t["theme"]: t["n"] for t in group["themes"]}
        assert themes["delivery"] == 2
        assert themes["staff"] == 2
        assert themes["price"] == 1
        listed = (await api.ok("/v1/responses"))["items"]
        german = next(r for r in listed if r["comment"].startswith("Viel"))
        assert german["sentiment"] < -0.3
        assert german["themes"] == ["price", "staff"]


class TestEligibility:
    async def test_policy_opt_out_quiet_time_and_limit(self, api: FeedbackApi) -> None:
        settings = await api.admin().put(
            "/v1/settings",
            json={
                "max_surveys_per_period": 2,
                "period_days": 30,
                "quiet_days": 3,
                "allow_private_webhook_targets": False,
            },
        )
        assert settings.status_code == 200, settings.text
        survey = await api.survey()
        fresh = await api.ok("/v1/eligibility", params={"customer": "new"})
        assert fresh["eligible"] is True

        await api.respond(survey["id"], {"recommend": 9}, customer_external_id="recent")
        recent = await api.ok("/v1/eligibility", params={"customer": "recent"})
        assert (recent["eligible"], recent["reason"].startswith("Quiet time")) == (False, True)

        for day in ("2000-01-01", "2000-01-10"):
            await api.respond(
                survey["id"], {"recommend": 9}, customer_external_id="old", submitted_at=f"{day}T00:00:00Z"
            )
        assert (await api.ok("/v1/eligibility", params={"customer": "old"}))["eligible"] is True

        from datetime import UTC, datetime, timedelta

        for days in (10, 5):
            at = (datetime.now(UTC) - timedelta(days=days)).isoformat()
            await api.respond(survey["id"], {"recommend": 9}, customer_external_id="busy", submitted_at=at)
        busy = await api.ok("/v1/eligibility", params={"customer": "busy"})
        assert (busy["eligible"], busy["responses_in_period"]) == (False, 2)
        assert busy["reason"].startswith("Survey limit")

        await api.created("/v1/opt-outs", {"customer_external_id": "new", "reason": "asked by phone"})
        opted = await api.ok("/v1/eligibility", params={"customer": "new"})
        assert (opted["eligible"], opted["reason"]) == (False, "The customer opted out of surveys.")

    async def test_settings_need_admin(self, api: FeedbackApi) -> None:
        response = await api.put("/v1/settings", json={"allow_private_webhook_targets": True})
        assert response.status_code == 403
