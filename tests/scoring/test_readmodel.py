"""The read model's consumers against events in any order and delivered more than once (the events'
contract, README "Events: the contract"): the stored state is the newest version's, whatever arrived
first, and a redelivered fact counts once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from sqlalchemy import text

from services.common.db import create_engine, create_sessionmaker
from services.common.events import Event
from services.scoring.readmodel import apply_journey_events
from services.scoring.settings import ScoringSettings

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def event(workspace: str, kind: str, version: int | None, data: dict[str, Any]) -> Event[dict[str, Any]]:
    return Event(id=uuid.uuid4(), type=kind, workspace_id=workspace, occurred_at=NOW, version=version, data=data)


def stage(key: str, position: int) -> dict[str, Any]:
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_OID, key)), "key": key, "name": key.title(), "position": position}


async def test_an_older_stage_list_arriving_late_changes_nothing(
    scoring_app: FastAPI, scoring_settings: ScoringSettings
) -> None:
    workspace, journey_id = f"rm-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    journey = {"id": journey_id, "key": "bike", "name": "Bike", "status": "active", "persona_id": None}
    created = event(
        workspace, "journey.journey.created", 1, {"journey": journey, "stages": [stage("need", 0), stage("buy", 1)]}
    )
    removed = event(workspace, "journey.stage.removed", 2, {"journey_id": journey_id, "stages": [stage("buy", 0)]})
    engine = create_engine(scoring_settings.database_url)
    try:
        sessionmaker = create_sessionmaker(engine)
        for batch in ([removed], [created], [removed, created]):  # newest first, then redelivered
            async with sessionmaker() as session, session.begin():
                await apply_journey_events(session, batch)
            async with sessionmaker() as session:
                rows = await session.execute(LIVE_STAGES, {"w": workspace, "j": journey_id})
                assert [(r.key, r.position) for r in rows] == [("buy", 0)]
    finally:
        await engine.dispose()


async def test_a_redelivered_interaction_counts_once(scoring_app: FastAPI, scoring_settings: ScoringSettings) -> None:
    workspace = f"rm-{uuid.uuid4().hex[:8]}"
    item = {
        "id": str(uuid.uuid4()), "customer": "c1", "touchpoint_id": str(uuid.uuid4()), "journey_id": None,
        "occurred_at": NOW.isoformat(),
    }  # fmt: skip
    recorded = event(workspace, "journey.interaction.recorded", None, {"items": [item]})
    engine = create_engine(scoring_settings.database_url)
    try:
        sessionmaker = create_sessionmaker(engine)
        for _ in range(2):
            async with sessionmaker() as session, session.begin():
                await apply_journey_events(session, [recorded])
        async with sessionmaker() as session:
            assert await session.scalar(COUNT_INTERACTIONS, {"w": workspace}) == 1
    finally:
        await engine.dispose()


LIVE_STAGES = text(
    "SELECT key, position FROM stage WHERE workspace_id = :w AND journey_id = :j AND NOT removed ORDER BY position"
)
COUNT_INTERACTIONS = text("SELECT count(*) FROM interaction WHERE workspace_id = :w")
