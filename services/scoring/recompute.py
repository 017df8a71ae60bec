"""Scores follow their events: the recompute worker takes a journey whose inputs changed (marked by the
read model's consumers, debounced), scores each of its scopes and stores one snapshot per scope with
its `scoring.score.updated` event, in one transaction.

- The inputs are read in one REPEATABLE READ transaction (one consistent state), one scope at a time
  (only one scope's facts are in memory); the maths runs in a thread, so the event loop keeps serving.
- A journey is leased while it is computed, by a token renewed meanwhile: two replicas never score it
  at once, a replica that died is taken over after the lease, and one whose lease was taken over
  stores nothing. A change during the computation moves `marks`, so the journey
  is scored again with it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common.consumer import as_of
from services.common.db import driver_connection
from services.common.ids import new_ids
from services.common.outbox import emit
from services.common.worker import LoopWorker
from services.scoring.compute import compute_scores
from services.scoring.events import SCORE_UPDATED, score_updated
from services.scoring.inputs import Scope, load_inputs
from services.scoring.models import Scores
from services.scoring.settings import ScoringSettings
from services.scoring.store import list_scopes, load_config

log = structlog.get_logger(__name__)

_CLAIM = text(
    "UPDATE dirty_journey d SET leased_until = now() + make_interval(secs => :seconds), lease = :lease "
    "FROM (SELECT workspace_id, journey_id FROM dirty_journey WHERE due_at <= now() "
    "      AND (leased_until IS NULL OR leased_until < now()) ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED) c "
    "WHERE d.workspace_id = c.workspace_id AND d.journey_id = c.journey_id "
    "RETURNING d.workspace_id, d.journey_id, d.marks"
)
_NEXT_DUE = text("SELECT extract(epoch FROM min(due_at) - now()) FROM dirty_journey WHERE leased_until IS NULL")
_LEASED = "workspace_id = :w AND journey_id = :j AND lease = :lease"
_RENEW = text(f"UPDATE dirty_journey SET leased_until = now() + make_interval(secs => :seconds) WHERE {_LEASED}")
# Held while the snapshots are stored: a recompute whose lease was taken over stores nothing.
_HOLDS = text(f"SELECT 1 FROM dirty_journey WHERE {_LEASED} FOR UPDATE")
# Done: forget the mark unless a change came in meanwhile; then it is due again after the debounce.
_DONE = text(f"DELETE FROM dirty_journey WHERE {_LEASED} AND marks = :marks")
_AGAIN = text(
    "UPDATE dirty_journey SET leased_until = NULL, lease = NULL, due_at = now() + make_interval(secs => :delay) "
    f"WHERE {_LEASED}"
)
_JOURNEY = text("SELECT key, persona_id, deleted FROM journey WHERE id = :j AND workspace_id = :w")
_DEFAULT_SCOPE = text(
    "INSERT INTO score_scope (id, workspace_id, journey_id) VALUES (:id, :w, :j) ON CONFLICT DO NOTHING"
)
_INSERT_SNAPSHOT = text(
    "INSERT INTO score_snapshot (id, workspace_id, journey_id, scope_id, version, computed_at, body) "
    "SELECT :id, :w, :j, :scope, coalesce(max(version), 0) + 1, :at, :body FROM score_snapshot "
    "WHERE workspace_id = :w AND journey_id = :j AND scope_id = :scope RETURNING version"
)
# The latest relevance of each touchpoint per journey (default scope): cross-journey priority reads it.
_RELEVANCE = text(
    "INSERT INTO touchpoint_relevance (workspace_id, journey_id, touchpoint_id, snapshot_id, relevance, "
    "relevance_low, relevance_high, customers, conversion_value) "
    "SELECT :w, :j, t, :id, r, lo, hi, :customers, :value FROM unnest(CAST(:tps AS uuid[]), "
    "CAST(:rs AS float8[]), CAST(:los AS float8[]), CAST(:his AS float8[])) AS x(t, r, lo, hi) "
    "ON CONFLICT (workspace_id, journey_id, touchpoint_id) DO UPDATE SET snapshot_id = EXCLUDED.snapshot_id, "
    "relevance = EXCLUDED.relevance, relevance_low = EXCLUDED.relevance_low, relevance_high = EXCLUDED.relevance_high, "
    "customers = EXCLUDED.customers, conversion_value = EXCLUDED.conversion_value"
)
_FORGET_RELEVANCE = text(
    "DELETE FROM touchpoint_relevance WHERE workspace_id = :w AND journey_id = :j "
    "AND touchpoint_id <> ALL(CAST(:tps AS uuid[]))"
)
CONSUMERS_OF_INPUTS = ("scoring-journey", "scoring-feedback")
_RETRY_SECONDS = 5.0


async def score_journey(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    workspace_id: str,
    journey_id: UUID,
    bootstrap: int,
    lease: UUID | None = None,
) -> list[Scores]:
    """Score every scope of the journey now and store the snapshots; returns them (none for a
    journey that is deleted or not known yet, or when `lease`, the worker's claim on the journey, was
    taken over meanwhile: the newer holder stores)."""
    async with sessionmaker() as session, session.begin():
        await session.execute(_DEFAULT_SCOPE, {"id": new_ids(1)[0], "w": workspace_id, "j": journey_id})
    async with sessionmaker() as session, session.begin():
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        row = (await session.execute(_JOURNEY, {"j": journey_id, "w": workspace_id})).first()
        if row is None or row.deleted:
            return []
        scopes = await list_scopes(session, workspace_id=workspace_id, journey_id=journey_id)
        config = await load_config(session, workspace_id=workspace_id)
        complete = [await as_of(session, consumer=c, workspace_id=workspace_id) for c in CONSUMERS_OF_INPUTS]
        raw = await driver_connection(session)
        config = replace(config, bootstrap=bootstrap)
        # One scope at a time: only one scope's facts are in memory, in the transaction's one state.
        scored, load_s, compute_s = [], 0.0, 0.0
        for scope in scopes:
            began = time.perf_counter()
            inputs = await load_inputs(
                raw,
                workspace_id=workspace_id,
                journey_id=journey_id,
                journey_key=row.key,
                journey_persona_id=row.persona_id,
                scope=Scope(scope.persona_id, scope.since, scope.until),
                conversions=list(config.conversion_outcomes),
            )
            loaded = time.perf_counter()
            scored.append((scope, await asyncio.to_thread(compute_scores, inputs, config), inputs.conversion_value))
            load_s, compute_s = load_s + loaded - began, compute_s + time.perf_counter() - loaded
            del inputs
    known = [t for t in complete if t is not None]
    stored_from = time.perf_counter()
    snapshots: list[Scores] = []
    now = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        if (
            lease is not None
            and (await session.execute(_HOLDS, {"w": workspace_id, "j": journey_id, "lease": lease})).first() is None
        ):
            log.warning(
                "recompute lease lost; the newer recompute stores",
                workspace_id=workspace_id,
                journey_id=str(journey_id),
            )
            return []
        for scope, body, conversion_value in scored:
            snapshot_id = new_ids(1)[0]
            scores = Scores.model_validate(
                {
                    **body,
                    "snapshot_id": snapshot_id,
                    "scope": {"persona_id": scope.persona_id, "since": scope.since, "until": scope.until},
                    "computed_at": now,
                    "as_of": min(known) if known else None,
                }
            )
            payload = scores.__pydantic_serializer__.to_json(scores)
            version = await session.scalar(
                _INSERT_SNAPSHOT,
                {"id": snapshot_id, "w": workspace_id, "j": journey_id, "scope": scope.id, "at": now, "body": payload},
            )
            if scope.persona_id is None and scope.since is None and scope.until is None:
                await _keep_relevance(session, workspace_id, scores, conversion_value)
            await emit(
                session,
                workspace_id=workspace_id,
                type=SCORE_UPDATED,
                data=score_updated(scores, scope_id=scope.id),
                aggregate_id=scope.id,
                version=version,
            )
            snapshots.append(scores)
    log.info(
        "journey scored",
        workspace_id=workspace_id,
        journey_id=str(journey_id),
        scopes=len(snapshots),
        load_ms=round(1000 * load_s),
        compute_ms=round(1000 * compute_s),
        store_ms=round(1000 * (time.perf_counter() - stored_from)),
    )
    return snapshots


async def _keep_relevance(session: AsyncSession, workspace_id: str, scores: Scores, value: float) -> None:
    tps = [str(t.touchpoint_id) for t in scores.touchpoints]
    await session.execute(
        _RELEVANCE,
        {
            "w": workspace_id,
            "j": scores.journey_id,
            "id": scores.snapshot_id,
            "customers": scores.counts.customers,
            "value": value,
            "tps": tps,
            "rs": [t.relevance for t in scores.touchpoints],
            "los": [t.relevance_low for t in scores.touchpoints],
            "his": [t.relevance_high for t in scores.touchpoints],
        },
    )
    await session.execute(_FORGET_RELEVANCE, {"w": workspace_id, "j": scores.journey_id, "tps": tps})


class RecomputeWorker(LoopWorker):
    """Scores the next due journey; sleeps until the next one is due (the debounce), or until a
    consumer's commit wakes it."""

    name = "scoring-recompute"

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: ScoringSettings) -> None:
        super().__init__(idle_seconds=settings.worker_poll_seconds)
        self._sessionmaker, self._settings = sessionmaker, settings

    async def run_once(self) -> bool:
        s = self._settings
        lease = uuid.uuid4()
        async with self._sessionmaker() as session, session.begin():
            claimed = (await session.execute(_CLAIM, {"seconds": s.recompute_lease_seconds, "lease": lease})).first()
            if claimed is None:
                wait = await session.scalar(_NEXT_DUE)
        if claimed is None:
            if wait is not None and float(wait) < s.worker_poll_seconds:
                await asyncio.sleep(max(0.0, float(wait)))
                return True
            return False
        w, j, marks = claimed
        held = {"w": w, "j": j, "lease": lease}
        renewing = asyncio.create_task(self._renew(held))
        try:
            await score_journey(
                self._sessionmaker, workspace_id=w, journey_id=j, bootstrap=s.bootstrap_replicates, lease=lease
            )
        except Exception:
            await self._release(held, delay=_RETRY_SECONDS)  # kept: scored again later
            raise
        finally:
            renewing.cancel()
        async with self._sessionmaker() as session, session.begin():
            done = await session.execute(_DONE, {**held, "marks": marks})
        if not done.rowcount:  # type: ignore[attr-defined]
            await self._release(held, delay=s.debounce_seconds)
        return True

    async def _renew(self, held: dict[str, Any]) -> None:
        """Keep the lease while the journey is scored: only a replica that died loses it."""
        seconds = self._settings.recompute_lease_seconds
        while True:
            await asyncio.sleep(seconds / 3)
            async with self._sessionmaker() as session, session.begin():
                await session.execute(_RENEW, {**held, "seconds": seconds})

    async def _release(self, held: dict[str, Any], *, delay: float) -> None:
        async with self._sessionmaker() as session, session.begin():
            await session.execute(_AGAIN, {**held, "delay": delay})
