"""The Alembic history creates exactly what the models declare (no drift), downgrades cleanly, carries
rows stored at an early revision to head, and builds indexes on tables holding data without
blocking their writes."""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from services.common.db import create_engine, ensure_database
from services.journey.app import SERVICE_DIR
from services.journey.models import JourneyTable
from tests.conftest import Servers, unique_name
from tests.contracts import migration_drift, round_trip_history
from tests.migration_steps import Walk, revisions, storing, walk_history


async def test_migrated_database_matches_the_models(journey_app: FastAPI) -> None:
    diff = await migration_drift(journey_app.state.engine, JourneyTable.metadata)
    assert diff == [], "models and migrations differ: add an Alembic revision"


async def test_history_downgrades_to_base_and_upgrades_again(servers: Servers) -> None:
    url = servers.database_url(unique_name("jg_journey_mig"))
    assert await round_trip_history(url, SERVICE_DIR, JourneyTable.metadata) == []


# Rows as revision 0002 stored them (customers, interactions and outcomes arrived with it); the
# later revisions must carry them to head. Kit tables too: 0010 reshapes dead_letter and the outbox.
WS = "ws-before-0003"
P, T, J, S, STEP, C, INTERACTION, OUTCOME = (uuid.UUID(int=n) for n in range(1, 9))
EVENT, DEAD_EVENT = uuid.UUID(int=100), uuid.UUID(int=101)
AT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
ROWS_AT_0002 = [
    ("INSERT INTO persona (id, workspace_id, key, name, needs, goals, pains, priority, rules) "
     "VALUES (:p, :ws, 'switcher', 'Switcher', '[\"cheap\"]', '[]', '[]', 10, '[]')"),
    ("INSERT INTO touchpoint (id, workspace_id, key, name, channel, yearly_cost, currency) "
     "VALUES (:t, :ws, 'hotline', 'Hotline', 'phone', 520000.00, 'EUR')"),
    ("INSERT INTO journey (id, workspace_id, key, name, persona_id, status, state) "
     "VALUES (:j, :ws, 'switch', 'Switch supplier', :p, 'active', 'current')"),
    "INSERT INTO stage (id, workspace_id, journey_id, key, name, position) VALUES (:s, :ws, :j, 'buy', 'Buy', 0)",
    ("INSERT INTO journey_step (id, workspace_id, journey_id, stage_id, touchpoint_id, position, moment_of_truth, "
     "expected_emotion) VALUES (:step, :ws, :j, :s, :t, 0, true, -1)"),
    ("INSERT INTO customer (id, workspace_id, external_id, profile, consents, channel_preferences, existing_customer, "
     "persona_id) VALUES (:c, :ws, 'c-1', '{\"city\": \"Köln\"}', '{}', '[]', false, :p)"),
    ("INSERT INTO interaction (id, workspace_id, event_id, customer_id, touchpoint_id, channel, occurred_at, "
     "journey_id) VALUES (:i, :ws, 'e-1', :c, :t, 'phone', :at, :j)"),
    ("INSERT INTO outcome (id, workspace_id, event_id, customer_id, name, value, currency, touchpoint_id, "
     "occurred_at, journey_id) VALUES (:o, :ws, 'o-1', :c, 'purchase', 480, 'EUR', :t, :at, :j)"),
    "INSERT INTO outbox_event (id, workspace_id, subject, payload) VALUES (:event, :ws, 'journey.x.done', 'x')",
    ("INSERT INTO dead_letter (consumer, event_id, subject, payload, error, attempts) "
     "VALUES ('journey-analytics', :dead, 'journey.x.done', 'x', 'boom', 8)"),
]  # fmt: skip
PARAMS = {"ws": WS, "p": P, "t": T, "j": J, "s": S, "step": STEP, "c": C, "i": INTERACTION, "o": OUTCOME,
          "event": EVENT, "dead": DEAD_EVENT, "at": AT}  # fmt: skip


@pytest.fixture(scope="module")
async def walked(servers: Servers) -> tuple[str, Walk]:
    url = servers.database_url(unique_name("jg_journey_steps"))
    # journey_rollup: one row per journey (0011 indexes it inside its transaction)
    walk = await walk_history(
        url, SERVICE_DIR, after={"0002": storing(ROWS_AT_0002, PARAMS)}, small_tables=frozenset({"journey_rollup"})
    )
    return url, walk


async def test_index_builds_on_tables_holding_data_do_not_block_writes(walked: tuple[str, Walk]) -> None:
    _, walk = walked
    assert walk.blocking_index_builds == [], "build these CONCURRENTLY (services/common/migrations.py)"


async def test_rows_stored_at_an_early_revision_reach_head(walked: tuple[str, Walk]) -> None:
    url, walk = walked
    assert walk.revisions[-1] == revisions(SERVICE_DIR, url)[-1]
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:

            async def one(sql: str) -> tuple[Any, ...]:
                return tuple((await conn.execute(sa.text(sql), {"ws": WS})).one())

            assert await one("SELECT id, name, version, needs FROM persona WHERE workspace_id = :ws") == (
                P, "Switcher", 1, ["cheap"])  # fmt: skip
            assert await one("SELECT id, yearly_cost, version FROM touchpoint WHERE workspace_id = :ws") == (
                T, Decimal("520000.00"), 1)  # fmt: skip
            assert await one("SELECT id, persona_id, version FROM journey WHERE workspace_id = :ws") == (J, P, 1)
            assert await one(
                "SELECT s.key, st.touchpoint_id, st.moment_of_truth, st.expected_emotion FROM journey_step st "
                "JOIN stage s ON s.id = st.stage_id WHERE st.workspace_id = :ws"
            ) == ("buy", T, True, -1)
            assert await one("SELECT id, persona_id, profile, version FROM customer WHERE workspace_id = :ws") == (
                C, P, {"city": "Köln"}, 1)  # fmt: skip
            assert await one("SELECT id, customer_id, occurred_at FROM interaction WHERE workspace_id = :ws") == (
                INTERACTION, C, AT)  # fmt: skip
            assert await one("SELECT id, value FROM outcome WHERE workspace_id = :ws") == (OUTCOME, Decimal("480"))
            # 0003 built the rollup from the interactions it found
            assert await one("SELECT touchpoint_id, customer_id, journey_tag FROM customer_touchpoint") == (T, C, J)
            # 0011: every journey is due a build of its projection
            assert await one(
                "SELECT journey_id, version, stale_since IS NOT NULL FROM journey_rollup WHERE workspace_id = :ws"
            ) == (J, 0, True)
            # 0010: the unpublished event waits for the relay with no failed attempt; the dead letter
            # got a UUID key
            assert await one("SELECT id, attempts, published_at FROM outbox_event WHERE workspace_id = :ws") == (
                EVENT, 0, None)  # fmt: skip
            dead = await one("SELECT id, event_id, error, attempts, workspace_id FROM dead_letter")
            assert isinstance(dead[0], uuid.UUID)
            assert dead[1:] == (DEAD_EVENT, "boom", 8, None)
    finally:
        await engine.dispose()


async def test_replicas_starting_together_migrate_once(servers: Servers) -> None:
    """The second replica waits for the first without holding a snapshot the first one's concurrent
    index builds would wait for (which would deadlock)."""
    url = servers.database_url(unique_name("jg_journey_replicas"))
    await ensure_database(url)
    script = (
        "from pathlib import Path; from services.common.migrations import upgrade_to_head; "
        f"upgrade_to_head(Path({str(SERVICE_DIR)!r}), {url!r})"
    )

    async def replica() -> int:  # a process each: Alembic's context is global to a process
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script)
        return await proc.wait()

    assert list(await asyncio.gather(replica(), replica())) == [0, 0]
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            version = await conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
            invalid = await conn.scalar(sa.text("SELECT count(*) FROM pg_index WHERE NOT indisvalid"))
    finally:
        await engine.dispose()
    assert (version, invalid) == (revisions(SERVICE_DIR, url)[-1], 0)
