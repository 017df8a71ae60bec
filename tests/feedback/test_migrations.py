"""The Alembic history creates exactly what the models declare (no drift), and downgrades cleanly."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi import FastAPI
from sqlalchemy.engine import Connection

from services.common.db import create_engine, ensure_database
from services.common.migrations import alembic_config
from services.feedback.app import SERVICE_DIR
from services.feedback.models import FeedbackTable
from tests.conftest import Servers, unique_name


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, FeedbackTable.metadata))


async def test_migrated_database_matches_the_models(feedback_app: FastAPI) -> None:
    async with feedback_app.state.engine.connect() as conn:
        diff = await conn.run_sync(_diff)
    assert diff == [], "models and migrations differ: add an Alembic revision"


async def test_history_downgrades_to_base_and_upgrades_again(servers: Servers) -> None:
    url = servers.database_url(unique_name("jg_feedback_mig"))
    await ensure_database(url)
    cfg = alembic_config(Path(SERVICE_DIR), url)
    await asyncio.to_thread(command.upgrade, cfg, "head")
    await asyncio.to_thread(command.downgrade, cfg, "base")
    await asyncio.to_thread(command.upgrade, cfg, "head")
    engine = create_engine(url)
    async with engine.connect() as conn:
        assert await conn.run_sync(_diff) == []
    await engine.dispose()
