"""The Alembic history creates exactly what the models declare (no drift), and downgrades cleanly."""

from __future__ import annotations

from fastapi import FastAPI

from services.feedback.app import SERVICE_DIR
from services.feedback.models import FeedbackTable
from tests.conftest import Servers, unique_name
from tests.contracts import migration_drift, round_trip_history


async def test_migrated_database_matches_the_models(feedback_app: FastAPI) -> None:
    diff = await migration_drift(feedback_app.state.engine, FeedbackTable.metadata)
    assert diff == [], "models and migrations differ: add an Alembic revision"


async def test_history_downgrades_to_base_and_upgrades_again(servers: Servers) -> None:
    url = servers.database_url(unique_name("jg_feedback_mig"))
    assert await round_trip_history(url, SERVICE_DIR, FeedbackTable.metadata) == []
