from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI

from tests.eventually import eventually
from tests.feedback.db import execute
from tests.feedback.factories import FeedbackApi


async def case_pages(api: FeedbackApi, limit: int, **params: Any) -> list[list[dict[str, Any]]]:
    """GET /v1/cases page by page to the end."""
    pages, cursor = [], None
    while True:
        page = await api.ok("/v1/cases", params={**params, "limit": limit, **({"cursor": cursor} if cursor else {})})
        pages.append(page["items"])
        if (cursor := page["next_cursor"]) is None:
            return pages


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


class TestCasesByCustomer:
    async def test_exactly_the_customers_cases_page_by_page(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        answered: dict[str | None, list[str]] = {"C-1": [], "C-2": [], None: []}
        for i, customer in enumerate(["C-1", "C-2", "C-1", None, "C-2", "C-1"]):  # detractors: a case each
            answered[customer].append(
                (await api.respond(survey["id"], {"recommend": i}, customer_external_id=customer))["id"]
            )
        await api.respond(survey["id"], {"recommend": 10}, customer_external_id="C-1")  # a promoter: no case
        every = await api.cases(6)

        def ids(cases: list[dict[str, Any]]) -> list[str]:
            return [c["id"] for c in cases]

        for customer in ("C-1", "C-2"):
            (page,) = await case_pages(api, 50, customer=customer)
            assert ids(page) == answered[customer]  # a case has its response's id, and their order
            assert {c["customer_external_id"] for c in page} == {customer}
        (both,) = await case_pages(api, 50, customer=["C-2", "C-1"])
        assert ids(both) == [i for i in ids(every) if i not in answered[None]]
        assert len(both) == 5
        paged = await case_pages(api, 2, customer="C-1")
        assert [len(p) for p in paged] == [2, 1]
        assert ids([c for p in paged for c in p]) == answered["C-1"]
        assert await case_pages(api, 50, customer="C-3") == [[]]
        assert await case_pages(api, 50, customer="C-1", status="closed") == [[]]

    async def test_another_workspaces_customer_of_the_same_id_is_not_listed(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        mine = await api.respond(survey["id"], {"recommend": 1}, customer_external_id="C-1")
        other = api.other()
        theirs = await other.respond((await other.survey())["id"], {"recommend": 2}, customer_external_id="C-1")
        await api.cases(1)
        await other.cases(1)
        assert [c["id"] for c in (await api.ok("/v1/cases", params={"customer": "C-1"}))["items"]] == [mine["id"]]
        assert [c["id"] for c in (await other.ok("/v1/cases", params={"customer": "C-1"}))["items"]] == [theirs["id"]]

    async def test_up_to_100_customers(self, api: FeedbackApi) -> None:
        customers = [f"C-{i}" for i in range(101)]
        assert (await api.ok("/v1/cases", params={"customer": customers[:100]}))["items"] == []
        refused = await api.get("/v1/cases", params={"customer": customers})
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in refused.json()["errors"]] == ["query.customer"]
        assert (await api.get("/v1/cases", params={"customer": ""})).status_code == 422

    async def test_a_workspace_with_many_cases_reads_them_by_index(
        self, api: FeedbackApi, feedback_app: FastAPI
    ) -> None:
        """10,000 cases of 1,000 customers: the statement GET /v1/cases?customer= runs finds its rows
        through ix_case_customer (the plan PostgreSQL picks for the statement and parameters sent)."""
        await execute(
            feedback_app,
            "INSERT INTO follow_up_case (id, workspace_id, response_id, reason, status, survey_id, "
            "customer_external_id) SELECT u, :w, u, 'NPS 0', 'open', u, 'C-' || (n % 1000) "
            "FROM (SELECT gen_random_uuid() AS u, n FROM generate_series(1, 10000) AS n) AS t",
            w=api.workspace,
        )
        await execute(feedback_app, "ANALYZE follow_up_case")
        seen: list[tuple[str, Any]] = []

        def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
            if "FROM follow_up_case" in statement and "ANY" in statement:
                seen.append((statement, parameters))

        engine = feedback_app.state.engine.sync_engine
        sa.event.listen(engine, "before_cursor_execute", record)
        try:
            pages = await case_pages(api, 500, customer=["C-7", "C-123"])
        finally:
            sa.event.remove(engine, "before_cursor_execute", record)
        assert [len(p) for p in pages] == [20]
        assert {c["customer_external_id"] for c in pages[0]} == {"C-7", "C-123"}
        ((statement, parameters),) = seen
        async with feedback_app.state.engine.connect() as conn:
            plan = "\n".join((await conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)).scalars())
        assert "ix_case_customer" in plan, plan
        assert "Seq Scan" not in plan, plan


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
