"""The Alembic history creates exactly what the models declare (no drift), downgrades cleanly, carries
rows stored at the first revision to head, and builds indexes on tables holding data without
blocking their writes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from services.common.db import create_engine
from services.feedback.app import SERVICE_DIR
from services.feedback.models import FeedbackTable
from tests.conftest import Servers, unique_name
from tests.contracts import migration_drift, round_trip_history
from tests.migration_steps import Walk, revisions, storing, walk_history


async def test_migrated_database_matches_the_models(feedback_app: FastAPI) -> None:
    diff = await migration_drift(feedback_app.state.engine, FeedbackTable.metadata)
    assert diff == [], "models and migrations differ: add an Alembic revision"


async def test_history_downgrades_to_base_and_upgrades_again(servers: Servers) -> None:
    url = servers.database_url(unique_name("jg_feedback_mig"))
    assert await round_trip_history(url, SERVICE_DIR, FeedbackTable.metadata) == []


# Rows as revision 0001 stored them; the later revisions must carry them to head (0005 empties the
# rollups on purpose: the projections consumer counts the stream again).
WS = "ws-at-0001"
SURVEY, RESPONSE, CASE, RULE, SUBSCRIPTION, DELIVERY = (uuid.UUID(int=n) for n in range(1, 7))
EVENT, DEAD_EVENT = uuid.UUID(int=100), uuid.UUID(int=101)
AT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
ROWS_AT_0001 = [
    ("INSERT INTO survey (id, workspace_id, key, name, kind, status, target_type, touchpoint_key, default_language, "
     "version) VALUES (:survey, :ws, 'nps', 'NPS', 'nps', 'active', 'touchpoint', 'hotline', 'de', 2)"),
    ("INSERT INTO survey_version (survey_id, version, workspace_id, questions) "
     "VALUES (:survey, 2, :ws, '[{\"key\": \"recommend\", \"type\": \"nps\"}]')"),
    ("INSERT INTO response (id, workspace_id, survey_id, survey_version, response_id, content_hash, "
     "customer_external_id, touchpoint_key, submitted_at, answers, comment, language, metadata, nps, created_at) "
     "VALUES (:response, :ws, :survey, 2, 'r-1', 'h', 'c-1', 'hotline', :at, '{\"recommend\": 3}', "
     "'Ewig gewartet', 'de', '{}', 3, :at)"),
    ("INSERT INTO loop_rule (id, workspace_id, name, enabled, priority, max_score) "
     "VALUES (:rule, :ws, 'detractors', true, 1, 6)"),
    ("INSERT INTO follow_up_case (id, workspace_id, response_id, rule_id, reason, status, survey_id) "
     "VALUES (:case, :ws, :response, :rule, 'NPS 3', 'open', :survey)"),
    ("INSERT INTO case_history (case_id, workspace_id, actor, action, changes) "
     "VALUES (:case, :ws, 'system', 'opened', '{}')"),
    "INSERT INTO opt_out (workspace_id, customer_external_id, reason) VALUES (:ws, 'c-2', 'asked')",
    ("INSERT INTO webhook_subscription (id, workspace_id, url, event_types, secret, enabled) "
     "VALUES (:subscription, :ws, 'https://crm.example/hook', ARRAY['feedback.response.submitted'], 's', true)"),
    ("INSERT INTO webhook_delivery (id, workspace_id, subscription_id, event_id, event_type, payload, status, "
     "attempts, log) VALUES (:delivery, :ws, :subscription, :event, 'feedback.response.submitted', 'x', "
     "'pending', 0, '[]')"),
    ("INSERT INTO workspace_setting (workspace_id, allow_private_webhook_targets, max_surveys_per_period, "
     "period_days, quiet_days) VALUES (:ws, false, 3, 30, 7)"),
    ("INSERT INTO response_rollup (workspace_id, survey_id, journey_key, stage_key, touchpoint_key, day, shard, "
     "nps_n, promoters, passives, detractors, csat_n, csat_satisfied, ces_n, ces_sum, ces_sumsq) "
     "VALUES (:ws, :survey, '', '', 'hotline', '2026-11-20', 0, 1, 0, 0, 1, 0, 0, 0, 0, 0)"),
    "INSERT INTO outbox_event (id, workspace_id, subject, payload) VALUES (:event, :ws, 'feedback.x.done', 'x')",
    ("INSERT INTO dead_letter (consumer, event_id, subject, payload, error, attempts) "
     "VALUES ('feedback-projections', :dead, 'feedback.x.done', 'x', 'boom', 8)"),
]  # fmt: skip
PARAMS = {"ws": WS, "survey": SURVEY, "response": RESPONSE, "case": CASE, "rule": RULE,
          "subscription": SUBSCRIPTION, "delivery": DELIVERY, "event": EVENT, "dead": DEAD_EVENT, "at": AT}  # fmt: skip


@pytest.fixture(scope="module")
async def walked(servers: Servers) -> tuple[str, Walk]:
    url = servers.database_url(unique_name("jg_feedback_steps"))
    return url, await walk_history(url, SERVICE_DIR, after={"0001": storing(ROWS_AT_0001, PARAMS)})


async def test_index_builds_on_tables_holding_data_do_not_block_writes(walked: tuple[str, Walk]) -> None:
    _, walk = walked
    assert walk.blocking_index_builds == [], "build these CONCURRENTLY (services/common/migrations.py)"


async def test_rows_stored_at_the_first_revision_reach_head(walked: tuple[str, Walk]) -> None:
    url, walk = walked
    assert walk.revisions[-1] == revisions(SERVICE_DIR, url)[-1]
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:

            async def rows(sql: str) -> list[tuple[Any, ...]]:
                return [tuple(r) for r in await conn.execute(sa.text(sql), {"ws": WS})]

            assert await rows("SELECT id, version, revision FROM survey WHERE workspace_id = :ws") == [(SURVEY, 2, 1)]
            assert await rows(
                "SELECT id, survey_id, nps, comment, submitted_at, answers FROM response WHERE workspace_id = :ws"
            ) == [(RESPONSE, SURVEY, 3, "Ewig gewartet", AT, {"recommend": 3})]
            assert await rows("SELECT id, response_id, rule_id, status, version FROM follow_up_case") == [
                (CASE, RESPONSE, RULE, "open", 1)]  # fmt: skip
            assert await rows("SELECT case_id, action FROM case_history") == [(CASE, "opened")]
            assert await rows("SELECT id, version FROM loop_rule") == [(RULE, 1)]
            assert await rows("SELECT customer_external_id, version, withdrawn_at FROM opt_out") == [("c-2", 1, None)]
            assert await rows("SELECT id, version FROM webhook_subscription") == [(SUBSCRIPTION, 1)]
            assert await rows("SELECT id, status FROM webhook_delivery") == [(DELIVERY, "pending")]
            assert await rows("SELECT max_surveys_per_period, version FROM workspace_setting") == [(3, 1)]
            # 0005: the rollups start empty, to be counted again from the stream
            assert await rows("SELECT * FROM response_rollup") == []
            assert await rows("SELECT id, attempts, published_at FROM outbox_event") == [(EVENT, 0, None)]
            dead = await rows("SELECT id, event_id, error, attempts, workspace_id FROM dead_letter")
            assert len(dead) == 1
            assert isinstance(dead[0][0], uuid.UUID)
            assert dead[0][1:] == (DEAD_EVENT, "boom", 8, None)
    finally:
        await engine.dispose()
