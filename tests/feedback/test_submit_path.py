"""The single-response hot path caches the survey, the rules and the webhook subscriptions per process
and lets its statement's guard catch every change, including one the cache was not told about (as
when another replica made it): these tests change each after it was cached."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from services.feedback.flows import record_responses
from services.feedback.models import ResponseCreate
from tests.feedback.factories import FeedbackApi
from tests.feedback.test_loop import cases_of
from tests.feedback.test_webhooks import allow_loopback


class TestCachedWriteContext:
    async def test_a_rule_added_after_caching_applies_to_the_next_response(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        await api.respond(survey["id"], {"recommend": 9})  # cached: the default rule, no case for a 9
        rule = await api.created("/v1/loop-rules", {"name": "Everyone", "metric": "nps", "max_score": 10})
        second = await api.respond(survey["id"], {"recommend": 9})
        third = await api.respond(survey["id"], {"recommend": 10})  # through the reloaded cache
        cases = await cases_of(api)
        assert sorted(c["response_id"] for c in cases) == sorted([second["id"], third["id"]])
        assert {c["rule_id"] for c in cases} == {rule["id"]}

    async def test_a_survey_closed_after_caching_refuses(self, api: FeedbackApi) -> None:
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

    async def test_a_subscription_added_after_caching_gets_the_next_event(self, api: FeedbackApi) -> None:
        await allow_loopback(api)
        survey = await api.survey()
        await api.respond(survey["id"], {"recommend": 9})
        hook = await api.created(
            "/v1/webhooks", {"url": "http://127.0.0.1:9/unused", "event_types": ["feedback.response.submitted"]}
        )
        await api.respond(survey["id"], {"recommend": 9})
        log = (await api.ok(f"/v1/webhooks/{hook['id']}/deliveries"))["items"]
        assert [d["event_type"] for d in log] == ["feedback.response.submitted"]  # the second response's


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
        assert len(await cases_of(api)) == 1


class TestGeneralWriteTransaction:
    async def test_a_batch_rolled_back_after_its_write_leaves_nothing(
        self, api: FeedbackApi, feedback_app: FastAPI
    ) -> None:
        """The write runs on the session's driver connection; SQLAlchemy begins its transaction
        lazily, so a driver statement sent first would commit on its own."""
        survey = await api.survey()
        items = [ResponseCreate.model_validate({"survey_id": survey["id"], "answers": {"recommend": 3}})]
        async with feedback_app.state.sessionmaker() as session, session.begin():
            outcome = await record_responses(session, workspace_id=api.workspace, items=items)
            assert [r["status"] for r in outcome.results] == ["created"]
            await session.rollback()
        assert (await api.ok("/v1/responses", params={"survey_id": survey["id"]}))["items"] == []
        assert await cases_of(api) == []
