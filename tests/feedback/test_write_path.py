"""The one write path of responses (single, bulk, import): it stores the facts and their events and
nothing derived; it reads the survey in its own transaction, so every change of a survey, rule or
subscription counts from the next write on, and an in-place edit of the questions cannot slip
between a response's check and its commit."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from fastapi import FastAPI

from services.feedback.consumers import PROJECTIONS
from services.feedback.flows import record_responses
from services.feedback.models import Question, ResponseCreate, SurveyUpdate
from services.feedback.store import surveys
from tests.eventually import eventually
from tests.feedback.db import applied, event_ids, rows, scalar, waiting_on_lock
from tests.feedback.factories import FeedbackApi, nps_questions


def item(survey_id: str, **answers: object) -> ResponseCreate:
    return ResponseCreate.model_validate({"survey_id": survey_id, "answers": answers})


class TestWhatAWriteStores:
    async def test_a_response_commits_its_row_and_its_event_and_nothing_derived(
        self, api: FeedbackApi, feedback_app: FastAPI
    ) -> None:
        survey = await api.survey()
        async with feedback_app.state.sessionmaker() as session, session.begin():
            outcome = await record_responses(
                session, workspace_id=api.workspace, items=[item(survey["id"], recommend=0)]
            )
            (created,) = outcome.created
            # Read in the write's own transaction: nothing else can have seen it yet.
            events = (
                await session.execute(
                    sa.text(
                        "SELECT subject, convert_from(payload, 'UTF8')::jsonb FROM outbox_event "
                        "WHERE workspace_id = :w ORDER BY created_at, id"
                    ),
                    {"w": api.workspace},
                )
            ).all()
            derived = (
                await session.execute(
                    sa.text(
                        "SELECT (SELECT count(*) FROM response_rollup WHERE workspace_id = :w) "
                        "+ (SELECT count(*) FROM response_rollup_month WHERE workspace_id = :w) "
                        "+ (SELECT count(*) FROM follow_up_case WHERE workspace_id = :w) "
                        "+ (SELECT count(*) FROM webhook_delivery WHERE workspace_id = :w)"
                    ),
                    {"w": api.workspace},
                )
            ).scalar()
        subjects = [s for s, _ in events]
        assert subjects == ["feedback.survey.created", "feedback.response.submitted"]
        submitted = events[1][1]
        assert (submitted["aggregate_id"], submitted["version"]) == (created["id"], 1)
        assert (submitted["data"]["id"], submitted["data"]["nps_category"]) == (created["id"], "detractor")
        assert derived == 0  # the detractor's case and the counts come from the projections

    async def test_a_batch_rolled_back_after_its_write_leaves_nothing(
        self, api: FeedbackApi, feedback_app: FastAPI
    ) -> None:
        """The write runs on the session's driver connection; SQLAlchemy begins its transaction
        lazily, so a driver statement sent first would commit on its own."""
        survey = await api.survey()
        async with feedback_app.state.sessionmaker() as session, session.begin():
            outcome = await record_responses(
                session, workspace_id=api.workspace, items=[item(survey["id"], recommend=3)]
            )
            assert [r["status"] for r in outcome.results] == ["created"]
            await session.rollback()
        assert (await api.ok("/v1/responses", params={"survey_id": survey["id"]}))["items"] == []
        subjects = await rows(feedback_app, "SELECT subject FROM outbox_event WHERE workspace_id = :w", w=api.workspace)
        assert subjects == [("feedback.survey.created",)]

    async def test_a_duplicate_writes_no_event(self, api: FeedbackApi, feedback_app: FastAPI) -> None:
        survey = await api.survey()
        body = {"survey_id": survey["id"], "answers": {"recommend": 8}, "response_id": "crm-7"}
        first = await api.post("/v1/responses", json=body)
        again = await api.post("/v1/responses", json=body)
        bulk = await api.bulk([body, body])
        assert (first.status_code, again.status_code) == (201, 200)
        assert [r["status"] for r in bulk["items"]] == ["duplicate", "duplicate"]
        count = "SELECT count(*) FROM outbox_event WHERE workspace_id = :w AND subject = 'feedback.response.submitted'"
        assert await scalar(feedback_app, count, w=api.workspace) == 1


class TestChangesCountFromTheNextWrite:
    async def test_a_rule_added_later_applies_to_the_responses_applied_after_it(
        self, api: FeedbackApi, feedback_app: FastAPI
    ) -> None:
        survey = await api.survey()
        await api.respond(survey["id"], {"recommend": 9})  # the default rule: no case for a 9
        (first,) = await event_ids(feedback_app, api.workspace, "feedback.response.submitted")
        await eventually(lambda: applied(feedback_app, PROJECTIONS, first))  # checked before the rule exists
        rule = await api.created("/v1/loop-rules", {"name": "Everyone", "metric": "nps", "max_score": 10})
        second = await api.respond(survey["id"], {"recommend": 9})
        third = await api.respond(survey["id"], {"recommend": 10})
        cases = await api.cases(2)
        assert sorted(c["response_id"] for c in cases) == sorted([second["id"], third["id"]])
        assert {c["rule_id"] for c in cases} == {rule["id"]}

    async def test_a_closed_survey_refuses(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        await api.respond(survey["id"], {"recommend": 9})
        closed = await api.patch(f"/v1/surveys/{survey['id']}", json={"status": "closed"})
        assert closed.status_code == 200, closed.text
        response = await api.post("/v1/responses", json={"survey_id": survey["id"], "answers": {"recommend": 9}})
        assert response.status_code == 409, response.text
        assert "closed" in response.json()["detail"]

    async def test_a_new_survey_version_is_validated_and_recorded(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        first = await api.respond(survey["id"], {"recommend": 9})
        questions = [*survey["questions"], {"key": "extra", "type": "boolean", "required": True, "text": {"en": "?"}}]
        edited = await api.patch(f"/v1/surveys/{survey['id']}", json={"questions": questions})
        assert edited.status_code == 200, edited.text
        missing = await api.post("/v1/responses", json={"survey_id": survey["id"], "answers": {"recommend": 9}})
        assert missing.status_code == 422, missing.text
        second = await api.respond(survey["id"], {"recommend": 9, "extra": True})
        assert (first["survey_version"], second["survey_version"]) == (1, 2)


class TestInPlaceEditAgainstAResponse:
    """Both orders of a response write and an in-place edit of the same (unanswered) version."""

    async def test_an_edit_waits_for_a_response_being_written_then_makes_a_new_version(
        self, api: FeedbackApi, feedback_app: FastAPI
    ) -> None:
        survey = await api.survey()
        questions = [*survey["questions"], {"key": "again", "type": "boolean", "text": {"en": "Again?"}}]
        async with feedback_app.state.sessionmaker() as session, session.begin():
            outcome = await record_responses(
                session, workspace_id=api.workspace, items=[item(survey["id"], recommend=9)]
            )
            assert [r["status"] for r in outcome.results] == ["created"]
            edit = asyncio.create_task(api.patch(f"/v1/surveys/{survey['id']}", json={"questions": questions}))
            await eventually(lambda: waiting_on_lock(feedback_app, "SELECT 1 FROM survey_version%FOR UPDATE"))
            assert not edit.done()
        edited = await edit
        assert edited.status_code == 200, edited.text
        assert edited.json()["version"] == 2  # the response it waited for answered version 1
        versions = (await api.ok(f"/v1/surveys/{survey['id']}/versions"))["items"]
        assert [[q["key"] for q in v["questions"]] for v in versions] == [
            ["recommend", "reason"],
            ["recommend", "reason", "again"],
        ]

    async def test_a_response_waits_for_an_edit_being_made_then_meets_the_edited_questions(
        self, api: FeedbackApi, feedback_app: FastAPI
    ) -> None:
        survey = await api.survey()
        change = SurveyUpdate(questions=[Question.model_validate(nps_questions()[0])])  # "reason" goes
        body = {"survey_id": survey["id"], "answers": {"recommend": 9, "reason": "Fast"}}
        async with feedback_app.state.sessionmaker() as session, session.begin():
            _, new_version = await surveys.update_survey(
                session, workspace_id=api.workspace, survey_id=survey["id"], data=change
            )
            assert not new_version
            post = asyncio.create_task(api.post("/v1/responses", json=body))
            await eventually(lambda: waiting_on_lock(feedback_app, "%FOR KEY SHARE OF v%"))
            assert not post.done()
        response = await post
        assert response.status_code == 422, response.text
        assert "answers.reason: the survey has no question 'reason'" in response.json()["detail"]


class TestConcurrentRetries:
    async def test_one_key_sent_five_times_at_once_stores_one_response(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        body = {"survey_id": survey["id"], "answers": {"recommend": 3}}  # no response_id: only the key dedupes
        sent = await asyncio.gather(
            *(api.post("/v1/responses", json=body, headers={"Idempotency-Key": "retry-storm"}) for _ in range(5))
        )
        assert all(r.status_code in (201, 409) for r in sent), [r.text for r in sent]
        stored = (await api.ok("/v1/responses", params={"survey_id": survey["id"]}))["items"]
        assert len(stored) == 1
        created = [r for r in sent if r.status_code == 201]
        assert {r.json()["id"] for r in created} == {stored[0]["id"]}
        again = await api.post("/v1/responses", json=body, headers={"Idempotency-Key": "retry-storm"})
        assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (201, "true")
        assert [c["response_id"] for c in await api.cases(1)] == [stored[0]["id"]]
