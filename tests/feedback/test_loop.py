from __future__ import annotations

from typing import Any

from tests.eventually import eventually
from tests.feedback.factories import FeedbackApi


class TestRules:
    async def test_default_rule_opens_case_for_detractor(self, api: FeedbackApi) -> None:
        survey = await api.survey(target={"type": "touchpoint", "touchpoint_key": "hotline"})
        await api.respond(survey["id"], {"recommend": 7})
        bad = await api.respond(survey["id"], {"recommend": 6}, customer_external_id="C-9")
        # the 7 came first: its event was applied before the 6's, which opened the only case
        (case,) = await api.cases(1)
        assert (case["response_id"], case["status"], case["touchpoint_key"]) == (bad["id"], "open", "hotline")
        assert (case["id"], case["version"], case["customer_external_id"]) == (bad["id"], 1, "C-9")
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
        await api.respond(nps_survey["id"], {"recommend": 0})  # the default rule is off now
        await api.respond(survey["id"], {"sat": 3})
        await api.respond(survey["id"], {"sat": 2})  # the last: its case says the others were checked
        cases = await api.cases(1)
        assert [(c["rule_id"], c["assignee"]) for c in cases] == [(rule["id"], "ann")]

    async def test_rule_above_scale_is_422(self, api: FeedbackApi) -> None:
        response = await api.post("/v1/loop-rules", json={"name": "x", "metric": "csat", "max_score": 9})
        assert response.status_code == 422

    async def test_theme_rule_opens_case_after_analysis(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        await api.created(
            "/v1/loop-rules", {"name": "Price complaints", "metric": None, "max_score": None, "theme": "price"}
        )
        await api.respond(survey["id"], {"recommend": 9}, comment="Lovely staff.")
        hit = await api.respond(survey["id"], {"recommend": 9}, comment="Good, but far too expensive.")
        # analysed in the order they were stored: the hit's case comes after the other was checked
        cases = await api.cases(1)
        assert [c["response_id"] for c in cases] == [hit["id"]]
        assert "price" in cases[0]["reason"]


class TestCases:
    async def test_case_workflow_keeps_history(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        await api.respond(survey["id"], {"recommend": 2})
        (case,) = await api.cases(1)
        url = f"/v1/cases/{case['id']}"
        moved = await api.patch(url, json={"status": "in_progress", "assignee": "bob"})
        assert moved.status_code == 200, moved.text
        assert moved.json()["version"] == 2
        noted = await api.created(f"{url}/notes", {"text": "Called the customer."})
        assert (noted["history"][-1]["note"], noted["version"]) == ("Called the customer.", 3)
        closed = await api.patch(url, json={"status": "closed"})
        assert (closed.json()["status"], closed.json()["version"]) == ("closed", 4)
        wrong = await api.patch(url, json={"status": "in_progress"})
        assert wrong.status_code == 422
        history = (await api.ok(url))["history"]
        assert (history[0]["action"], history[0]["actor"]) == ("opened", "rule")
        assert [h["action"] for h in history] == ["opened", "updated", "note", "updated"]
        assert history[1]["changes"]["status"] == {"from": "open", "to": "in_progress"}
        assert (await api.ok("/v1/cases", params={"status": "closed"}))["items"][0]["id"] == case["id"]

    async def test_case_by_hand_and_one_per_response(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        response = await api.respond(survey["id"], {"recommend": 9})
        case = await api.created("/v1/cases", {"response_id": response["id"], "assignee": "eve", "note": "VIP"})
        assert (case["id"], case["assignee"], case["version"]) == (response["id"], "eve", 1)
        again = await api.post("/v1/cases", json={"response_id": response["id"]})
        assert again.status_code == 409
        history = (await api.ok(f"/v1/cases/{case['id']}"))["history"]
        assert [(h["action"], h["note"]) for h in history] == [("opened", None), ("note", "VIP")]
        assert history[0]["actor"] == history[1]["actor"] != "rule"

    async def test_other_workspace_cannot_see_case(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        await api.respond(survey["id"], {"recommend": 0})
        (case,) = await api.cases(1)
        other = api.other()
        assert (await other.get(f"/v1/cases/{case['id']}")).status_code == 404
        assert (await other.patch(f"/v1/cases/{case['id']}", json={"status": "closed"})).status_code == 404
        assert (await other.ok("/v1/cases"))["items"] == []


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

        opt_out = await api.created("/v1/opt-outs", {"customer_external_id": "new", "reason": "asked by phone"})
        assert (opt_out["version"], opt_out["withdrawn_at"]) == (1, None)
        opted = await api.ok("/v1/eligibility", params={"customer": "new"})
        assert (opted["eligible"], opted["reason"]) == (False, "The customer opted out of surveys.")
        assert (await api.delete("/v1/opt-outs/new")).status_code == 204
        assert (await api.ok("/v1/eligibility", params={"customer": "new"}))["eligible"] is True
        assert (await api.delete("/v1/opt-outs/new")).status_code == 404  # withdrawn already
        again = await api.created("/v1/opt-outs", {"customer_external_id": "new"})
        assert (again["version"], again["withdrawn_at"], again["reason"]) == (3, None, None)
        assert (await api.ok("/v1/eligibility", params={"customer": "new"}))["eligible"] is False

    async def test_settings_need_admin(self, api: FeedbackApi) -> None:
        response = await api.put("/v1/settings", json={"allow_private_webhook_targets": True})
        assert response.status_code == 403
