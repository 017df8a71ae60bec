"""Rebuild: an empty scoring database that replays the journey and feedback streams from the start
reaches the same scores as the running service (DESIGN §2: every read model can be rebuilt)."""

from __future__ import annotations

import asyncio
from typing import Any

import nats

from services.common.consumer import Runner
from services.common.db import create_engine, create_sessionmaker, ensure_database
from services.common.migrations import upgrade_to_head
from services.scoring.app import SERVICE_DIR
from services.scoring.readmodel import CONSUMERS
from services.scoring.recompute import score_journey
from tests.conftest import Servers, unique_name
from tests.scoring.factories import Stack, small_journey

NOT_COMPARED = {"snapshot_id", "computed_at", "fitted_at", "as_of"}


def comparable(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in scores.items() if k not in NOT_COMPARED}


class TestRebuild:
    async def test_a_fresh_database_replaying_the_streams_scores_the_same(
        self, stack: Stack, servers: Servers, scoring_settings: Any
    ) -> None:
        built = await small_journey(stack)
        running = built["scores"]
        url = servers.database_url(unique_name("jg_scoring_rebuild"))
        await ensure_database(url)
        await asyncio.to_thread(upgrade_to_head, SERVICE_DIR, url)
        engine = create_engine(url)
        nc = await nats.connect(servers.nats_url)
        try:
            sessionmaker = create_sessionmaker(engine)
            replayed = [await Runner(c, sessionmaker).replay(nc) for c in CONSUMERS]
            assert all(n > 0 for n in replayed)
            fresh = await score_journey(
                sessionmaker,
                workspace_id=stack.workspace,
                journey_id=built["journey"]["id"],
                bootstrap=scoring_settings.bootstrap_replicates,
            )
        finally:
            await nc.close()
            await engine.dispose()
        assert len(fresh) == 1
        assert comparable(fresh[0].model_dump(mode="json")) == comparable(running)
