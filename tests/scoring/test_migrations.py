"""The scoring history creates exactly the tables the service declares, and downgrades cleanly."""

from __future__ import annotations

from fastapi import FastAPI

from services.scoring.app import SERVICE_DIR
from services.scoring.tables import METADATA
from tests.conftest import Servers, unique_name
from tests.contracts import migration_drift, round_trip_history


async def test_migrated_database_matches_the_tables(scoring_app: FastAPI) -> None:
    diff = await migration_drift(scoring_app.state.engine, METADATA)
    assert diff == [], "tables and migrations differ: add an Alembic revision"


async def test_history_downgrades_to_base_and_upgrades_again(servers: Servers) -> None:
    url = servers.database_url(unique_name("jg_scoring_mig"))
    assert await round_trip_history(url, SERVICE_DIR, METADATA) == []
