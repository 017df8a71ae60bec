"""The projections (rollups, cases, deliveries) are built from the events alone: rebuilt from the stream
they equal what was kept live, on data posted with duplicates, retries and out-of-order times; an
event applied twice has one effect; a read sees a write within about a second, says how fresh it is,
and writes nothing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import nats
import orjson
import pytest
from fastapi import FastAPI
from nats.aio.client import Client as NATS

from services.common.events import decode_event
from services.feedback.consumers import PROJECTIONS
from tests.conftest import Servers
from tests.eventually import eventually
from tests.feedback.db import applied, event_ids, execute, fingerprint, rows
from tests.feedback.factories import FeedbackApi

_COUNTS = "nps_n, promoters, passives, detractors, csat_n, csat_satisfied, ces_n, ces_sum, ces_sumsq"
_KEYS = "survey_id, journey_key, stage_key, touchpoint_key"
# What the rollups must hold, computed from the stored responses.
_FROM_RESPONSES = """
SELECT survey_id, coalesce(journey_key, ''), coalesce(stage_key, ''), coalesce(touchpoint_key, ''), {period},
  count(nps), count(*) FILTER (WHERE nps >= 9), count(*) FILTER (WHERE nps BETWEEN 7 AND 8),
  count(*) FILTER (WHERE nps <= 6), count(csat), count(*) FILTER (WHERE csat >= 4),
  count(ces), coalesce(sum(ces), 0), coalesce(sum(ces * ces), 0)
FROM response WHERE workspace_id = :w GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
"""
_CASES = (
    "SELECT id, response_id, rule_id, rule_name, reason, status, assignee, due_at, survey_id, customer_external_id, "
    "touchpoint_key, version, created_at, updated_at FROM follow_up_case WHERE workspace_id = :w ORDER BY id"
)
_HISTORY = (
    "SELECT case_id, at, actor, action, changes, note FROM case_history WHERE workspace_id = :w ORDER BY case_id, id"
)


@pytest.fixture
async def nc(servers: Servers) -> AsyncIterator[NATS]:
    client = await nats.connect(servers.nats_url)
    yield client
    await client.close()


async def rollups(app: FastAPI, workspace: str) -> list[list[Any]]:
    """The workspace's rows of both rollup levels."""
    sql = "SELECT {keys}, {period}, {counts} FROM {table} WHERE workspace_id = :w ORDER BY 1, 2, 3, 4, 5"
    return [
        await rows(app, sql.format(keys=_KEYS, period=period, counts=_COUNTS, table=table), w=workspace)
        for table, period in (("response_rollup", "day"), ("response_rollup_month", "month"))
    ]


async def applied_by_all(app: FastAPI, event_id: str) -> bool:
    return await applied(app, PROJECTIONS, event_id)


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def post_with_duplicates(api: FeedbackApi) -> dict[str, Any]:
    """Responses posted twice in every way a client repeats itself, with submitted_at out of order
    (and across day and month ends in UTC); returns the surveys and the number stored."""
    mix = await api.survey(
        "mix",
        kind="custom",
        questions=[
            {"key": "recommend", "type": "nps", "required": True, "text": {"en": "?"}},
            {"key": "sat", "type": "rating", "text": {"en": "?"}},
            {"key": "effort", "type": "ces", "text": {"en": "?"}},
        ],
        target={"type": "touchpoint", "touchpoint_key": "shop"},
    )
    plain = await api.survey("plain")  # relational: no journey, stage or touchpoint
    m, p = mix["id"], plain["id"]
    one = {"survey_id": m, "response_id": "r-1", "answers": {"recommend": 3, "sat": 2, "effort": 6},
           "submitted_at": "2025-03-10T10:00:00Z"}  # fmt: skip
    assert (await api.post("/v1/responses", json=one)).status_code == 201
    assert (await api.post("/v1/responses", json=one)).status_code == 200  # the same response_id again
    keyed = {"survey_id": m, "answers": {"recommend": 10, "sat": 5}, "submitted_at": "2025-01-05T23:30:00-02:00"}
    for _ in range(2):  # a retry with the same key
        assert (await api.post("/v1/responses", json=keyed, headers={"Idempotency-Key": "k-1"})).status_code == 201
    a = {"survey_id": m, "response_id": "r-2", "answers": {"recommend": 7, "effort": 2},
         "submitted_at": "2025-02-28T23:59:59Z"}  # fmt: skip
    items = [
        a,
        {"survey_id": m, "answers": {"recommend": 0}, "submitted_at": "2025-02-01T00:00:00Z",
         "comment": "Far too expensive."},
        a,  # repeated within the call
        {"survey_id": p, "response_id": "r-3", "answers": {"recommend": 9}, "submitted_at": "2024-12-31T23:00:00Z",
         "comment": "Expensive, but worth it."},
        {**a, "answers": {"recommend": 1}},  # another content under r-2: a conflict
    ]  # fmt: skip
    for _ in range(2):
        response = await api.post("/v1/responses/bulk", json={"items": items}, headers={"Idempotency-Key": "b-1"})
        assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["items"]] == [
        "created",
        "created",
        "duplicate",
        "created",
        "conflict",
    ]
    ndjson = b"\n".join(
        orjson.dumps(x)
        for x in (
            one,
            {"survey_id": m, "response_id": "r-4", "answers": {"recommend": 5}, "submitted_at": "2025-03-10T11:00:00Z"},
        )
    )
    imported = await api.post("/v1/responses/import", content=ndjson, headers={"Content-Type": "application/x-ndjson"})
    assert [r["status"] for r in imported.json()["items"]] == ["duplicate", "created"]
    await api.respond(m, {"recommend": 6}, submitted_at="2024-06-01T12:00:00Z")  # the oldest, posted last
    return {"mix": mix, "plain": plain, "stored": 7}


class TestRebuiltFromTheStream:
    async def test_rollups_rebuilt_equal_the_live_ones_and_the_responses(
        self, api: FeedbackApi, feedback_app: FastAPI, nc: NATS
    ) -> None:
        posted = await post_with_duplicates(api)
        await api.metric(n=posted["stored"])
        live = await rollups(feedback_app, api.workspace)
        expected = [
            await rows(feedback_app, _FROM_RESPONSES.format(period=period), w=api.workspace)
            for period in (
                "(submitted_at AT TIME ZONE 'UTC')::date",
                "date_trunc('month', submitted_at AT TIME ZONE 'UTC')::date",
            )
        ]
        assert live == expected
        assert [len(level) for level in live] == [6, 5]  # r-1 and r-4 share a day; months hold several
        runner = feedback_app.state.runners[PROJECTIONS]
        assert await runner.replay(nc) >= posted["stored"]
        assert await rollups(feedback_app, api.workspace) == live
        again = await api.metric(n=posted["stored"], group_by="month")
        assert again["as_of"] is not None

        # In any order, one by one: the same counts.
        ids = await event_ids(feedback_app, api.workspace, "feedback.response.submitted")
        payloads = await rows(
            feedback_app, "SELECT payload FROM outbox_event WHERE id = ANY(CAST(:ids AS uuid[]))", ids=ids
        )
        await runner.reset()
        for (payload,) in sorted(payloads, key=lambda p: orjson.loads(p[0])["data"]["submitted_at"], reverse=True):
            assert await runner.apply_now([decode_event(payload)]) == 1
        assert await rollups(feedback_app, api.workspace) == live
        await runner.replay(nc)  # the other workspaces' counts back

    async def test_cases_rebuilt_equal_the_live_ones_and_worked_cases_stay(
        self, api: FeedbackApi, feedback_app: FastAPI, nc: NATS
    ) -> None:
        await api.created("/v1/loop-rules", {"name": "Detractors", "metric": "nps", "max_score": 6, "assignee": "ann"})
        await api.created("/v1/loop-rules", {"name": "Price", "metric": None, "max_score": None, "theme": "price"})
        posted = await post_with_duplicates(api)
        cases = await api.cases(5)  # r-1, the 0, r-4 and the 6 by score; r-3 by its comment's theme
        by_reason = sorted(c["reason"].split(":")[0] for c in cases)
        assert by_reason == ["Detractors"] * 4 + ["Price"]
        worked = next(c for c in cases if c["reason"].startswith("Detractors"))
        assert (await api.patch(f"/v1/cases/{worked['id']}", json={"status": "in_progress"})).status_code == 200
        keyed = (await api.ok("/v1/responses", params={"survey_id": posted["mix"]["id"]}))["items"]
        promoter = next(r for r in keyed if r["nps"] == 10)
        await api.created("/v1/cases", {"response_id": promoter["id"], "note": "VIP"})
        live = await rows(feedback_app, _CASES, w=api.workspace), await rows(feedback_app, _HISTORY, w=api.workspace)

        untouched = "SELECT id FROM follow_up_case WHERE workspace_id = :w AND rule_id IS NOT NULL AND version = 1"
        await execute(feedback_app, f"DELETE FROM case_history WHERE case_id IN ({untouched})", w=api.workspace)
        await execute(feedback_app, f"DELETE FROM follow_up_case WHERE id IN ({untouched})", w=api.workspace)
        assert len(await rows(feedback_app, _CASES, w=api.workspace)) == 2  # the worked one and the one by hand
        await feedback_app.state.runners[PROJECTIONS].replay(nc)
        rebuilt = await rows(feedback_app, _CASES, w=api.workspace), await rows(feedback_app, _HISTORY, w=api.workspace)
        assert rebuilt == live


class TestAppliedTwice:
    async def test_a_redelivered_event_has_no_second_effect(self, api: FeedbackApi, feedback_app: FastAPI) -> None:
        survey = await api.survey()
        await api.respond(survey["id"], {"recommend": 2})
        (case,) = await api.cases(1)
        before = await api.metric(n=1)
        (event_id,) = await event_ids(feedback_app, api.workspace, "feedback.response.submitted")
        await eventually(lambda: applied_by_all(feedback_app, event_id))
        ((payload,),) = await rows(feedback_app, "SELECT payload FROM outbox_event WHERE id = :e", e=event_id)
        event = decode_event(payload)
        runner = feedback_app.state.runners[PROJECTIONS]
        assert await runner.apply_now([event]) == 0  # JetStream delivers it again: the inbox holds it
        assert (await api.ok("/v1/metrics/nps"))["overall"] == before["overall"]
        # Even past the inbox (the rollups count it twice then), no second case is opened or published.
        await execute(
            feedback_app, "DELETE FROM inbox_event WHERE consumer = :c AND event_id = :e", c=PROJECTIONS, e=event_id
        )
        assert await runner.apply_now([event]) == 1
        assert await api.cases(1) == [case]
        assert len(await event_ids(feedback_app, api.workspace, "feedback.case.opened")) == 1


class TestReads:
    async def test_a_response_is_counted_within_about_a_second_and_as_of_says_so(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        started = time.monotonic()
        stored = await api.respond(survey["id"], {"recommend": 9})
        counted = await api.metric(n=1)
        elapsed = time.monotonic() - started
        assert elapsed < 5, elapsed  # ~0.1-0.3 s here; the slack is for a loaded machine
        assert at(counted["as_of"]) >= at(stored["created_at"])
        assert counted["source"] == "projection"

    async def test_a_read_writes_nothing(self, api: FeedbackApi, feedback_app: FastAPI) -> None:
        survey = await api.survey(target={"type": "touchpoint", "touchpoint_key": "shop"})
        await api.bulk([{"survey_id": survey["id"], "answers": {"recommend": 10}}] * 3)
        *_, last = await event_ids(feedback_app, api.workspace, "feedback.response.submitted")
        # Promoters without comments: once the projections applied them, nothing more follows.
        await eventually(lambda: applied_by_all(feedback_app, last))
        before = await fingerprint(feedback_app, api.workspace)
        reader = FeedbackApi(api.http, api.keys, api.workspace, ["feedback:read"])
        for url, params in (
            ("/v1/metrics/nps", {"group_by": "touchpoint"}),
            ("/v1/metrics/nps", {"source": "raw"}),
            ("/v1/metrics/csat", {"group_by": "month"}),
            ("/v1/metrics/ces", {"channel": "web"}),
            ("/v1/comments/summary", {}),
            ("/v1/cases", {}),
            ("/v1/responses", {}),
            ("/v1/eligibility", {"customer": "C-1"}),
            ("/v1/settings", {}),
        ):
            await reader.ok(url, params=params)
        assert (await reader.ok("/v1/metrics/nps"))["overall"]["n"] == 3
        assert await fingerprint(feedback_app, api.workspace) == before
