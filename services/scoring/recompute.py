"""Scores follow their events: the recompute worker takes a journey whose inputs changed (marked by the
read model's consumers) and stores one snapshot per scope with its `scoring.score.updated` event.

- **Refresh** (after the debounce): the snapshot takes the scope's tally, kept by the consumers, and
  the models of the latest snapshot (`compute.refresh_scores`): no load, no fit, milliseconds.
- **Fit** (after the refit delay, at once for structural changes, new settings or a caller's
  `POST .../recompute`): every scope's inputs are loaded and its models fitted. The inputs are read
  in one REPEATABLE READ transaction (one consistent state), one scope at a time (only one scope's
  facts are in memory); the maths runs in a thread, so the event loop keeps serving. A scope without
  a tally has it counted first (`tallies.count`).
- A journey is leased while it is computed, by a token renewed meanwhile: two replicas never score it
  at once, a replica that died is taken over after the lease, and one whose lease was taken over
  stores nothing. A change during the computation moves `marks`, so the journey is scored again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common.consumer import as_of
from services.common.db import driver_connection
from services.common.ids import new_ids
from services.common.outbox import emit
from services.common.worker import LoopWorker
from services.scoring import tallies
from services.scoring.compute import compute_scores, refresh_scores
from services.scoring.events import SCORE_UPDATED, score_updated
from services.scoring.inputs import Scope, load_inputs
from services.scoring.models import Scores
from services.scoring.settings import ScoringSettings
from services.scoring.store import list_scopes, load_config

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Lane:
    """One of the two lanes of `dirty_journey`: its due time and lease columns."""

    name: str
    due: str
    until: str
    lease: str

    def sql(self, statement: str) -> Any:
        return text(statement.format(due=self.due, until=self.until, lease=self.lease))


REFRESH = Lane("scoring-refresh", "due_at", "leased_until", "lease")
FIT = Lane("scoring-fit", "fit_due_at", "fit_leased_until", "fit_lease")
_THIS = "workspace_id = :w AND journey_id = :j"
# Claimed: due, or leased by a replica whose lease ran out (it died). The due time is cleared: a
# change from now on makes the journey due again.
_CLAIM = (
    "UPDATE dirty_journey d SET {until} = now() + make_interval(secs => :seconds), {lease} = :lease, {due} = NULL "
    "FROM (SELECT workspace_id, journey_id FROM dirty_journey WHERE ({due} <= now() AND {lease} IS NULL) "
    "      OR {until} < now() ORDER BY coalesce({until}, {due}) LIMIT 1 FOR UPDATE SKIP LOCKED) c "
    "WHERE d.workspace_id = c.workspace_id AND d.journey_id = c.journey_id RETURNING d.workspace_id, d.journey_id"
)
_NEXT_DUE = (
    "SELECT extract(epoch FROM min(CASE WHEN {lease} IS NULL THEN {due} ELSE {until} END) - now()) FROM dirty_journey"
)
_RENEW = (
    f"UPDATE dirty_journey SET {{until}} = now() + make_interval(secs => :seconds) WHERE {_THIS} AND {{lease}} = :lease"
)
# Held while the snapshots are stored: a recompute whose lease was taken over stores nothing.
_HOLDS = f"SELECT 1 FROM dirty_journey WHERE {_THIS} AND {{lease}} = :lease FOR UPDATE"
_RELEASE = (
    "UPDATE dirty_journey SET {lease} = NULL, {until} = NULL, "
    "{due} = least({due}, now() + make_interval(secs => CAST(:retry AS float8))) "
    f"WHERE {_THIS} AND {{lease}} = :lease"
)
_FORGET = text(
    f"DELETE FROM dirty_journey WHERE {_THIS} AND due_at IS NULL AND fit_due_at IS NULL AND lease IS NULL "
    "AND fit_lease IS NULL"
)
_FIT_NOW = text(f"UPDATE dirty_journey SET fit_due_at = least(fit_due_at, now()) WHERE {_THIS}")
# Stores of the two lanes for one journey take turns (each snapshot's version is the next).
_STORING = text("SELECT pg_advisory_xact_lock(8004, hashtext(CAST(:j AS text)))")
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
# The latest snapshot of each scope: it carries the latest fit, which a refresh carries on.
_LATEST = text(
    "SELECT DISTINCT ON (scope_id) scope_id, body FROM score_snapshot WHERE workspace_id = :w AND journey_id = :j "
    "ORDER BY scope_id, id DESC"
)
CONSUMERS_OF_INPUTS = ("scoring-journey", "scoring-feedback")
_RETRY_SECONDS = 5.0


async def score_journey(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    workspace_id: str,
    journey_id: UUID,
    bootstrap: int,
    lease: tuple[Lane, UUID] | None = None,
) -> list[Scores]:
    """Fit every scope of the journey now and store the snapshots; returns them (none for a journey
    that is deleted or not known yet, or when `lease`, the worker's claim on the journey, was taken
    over meanwhile: the newer holder stores). Scopes without a tally have it counted first."""
    async with sessionmaker() as session, session.begin():
        await session.execute(_DEFAULT_SCOPE, {"id": new_ids(1)[0], "w": workspace_id, "j": journey_id})
    await _count_missing_tallies(sessionmaker, workspace_id, journey_id)
    async with sessionmaker() as session, session.begin():
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        row = (await session.execute(_JOURNEY, {"j": journey_id, "w": workspace_id})).first()
        if row is None or row.deleted:
            return []
        scopes = await list_scopes(session, workspace_id=workspace_id, journey_id=journey_id)
        config = await load_config(session, workspace_id=workspace_id)
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
            body = await asyncio.to_thread(compute_scores, inputs, config)
            scored.append(_Scored(scope, body, inputs.conversion_value))
            load_s, compute_s = load_s + loaded - began, compute_s + time.perf_counter() - loaded
            del inputs
    stored_from = time.perf_counter()

    async def brought_up(session: AsyncSession) -> list[_Scored]:
        # A fit's counts are the tallies' as they are when it stores: a refresh stored while it was
        # fitting must not be followed by older counts.
        counted = await tallies.read(session, workspace_id=workspace_id, journey_id=journey_id)
        current = []
        for item in scored:
            basis, tally = counted.get(item.scope.id, (None, None))
            if tally is not None and basis == [t["touchpoint_id"] for t in item.body["touchpoints"]]:
                item = replace(item, body=refresh_scores(item.body, tally, config))
            current.append(item)
        return current

    snapshots = await _store(sessionmaker, workspace_id, journey_id, brought_up, fitted=True, lease=lease) or []
    log.info(
        "journey fitted",
        workspace_id=workspace_id,
        journey_id=str(journey_id),
        scopes=len(snapshots),
        load_ms=round(1000 * load_s),
        compute_ms=round(1000 * compute_s),
        store_ms=round(1000 * (time.perf_counter() - stored_from)),
    )
    return snapshots


async def refresh_journey(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    workspace_id: str,
    journey_id: UUID,
    lease: tuple[Lane, UUID] | None = None,
) -> list[Scores] | None:
    """Refresh every scope of the journey from its tally and latest fit; None when that cannot be
    done (a scope without a tally, or without a fit over the same touchpoints): it needs a fit."""
    began = time.perf_counter()

    async def refreshed(session: AsyncSession) -> list[_Scored] | None:
        # Read while the journey's stores take turns: a fit stored a moment ago is the one carried.
        row = (await session.execute(_JOURNEY, {"j": journey_id, "w": workspace_id})).first()
        if row is None or row.deleted:
            return []
        scopes = await list_scopes(session, workspace_id=workspace_id, journey_id=journey_id)
        if not scopes:
            return None  # the default scope is added by the first fit
        counted = await tallies.read(session, workspace_id=workspace_id, journey_id=journey_id)
        latest = {r.scope_id: r.body for r in await session.execute(_LATEST, {"w": workspace_id, "j": journey_id})}
        config = await load_config(session, workspace_id=workspace_id)
        scored = []
        for scope in scopes:
            if scope.id not in counted or scope.id not in latest:
                return None
            basis, tally = counted[scope.id]
            previous = orjson.loads(latest[scope.id])
            if "fitted_at" not in previous or [UUID(t["touchpoint_id"]) for t in previous["touchpoints"]] != basis:
                return None
            scored.append(_Scored(scope, refresh_scores(previous, tally, config), None, previous["fitted_at"]))
        return scored

    snapshots = await _store(sessionmaker, workspace_id, journey_id, refreshed, fitted=False, lease=lease)
    log.info(
        "journey refreshed",
        workspace_id=workspace_id,
        journey_id=str(journey_id),
        scopes=None if snapshots is None else len(snapshots),
        ms=round(1000 * (time.perf_counter() - began)),
    )
    return snapshots


@dataclass(frozen=True, slots=True)
class _Scored:
    scope: Any
    body: dict[str, Any]
    conversion_value: float | None  # a fit's (None: a refresh): kept for the cross-journey priority
    fitted_at: Any = None  # a refresh's: that of the fit it carries


async def _as_of(session: AsyncSession, workspace_id: str) -> datetime | None:
    complete = [await as_of(session, consumer=c, workspace_id=workspace_id) for c in CONSUMERS_OF_INPUTS]
    known = [t for t in complete if t is not None]
    return min(known) if known else None


async def _count_missing_tallies(
    sessionmaker: async_sessionmaker[AsyncSession], workspace_id: str, journey_id: UUID
) -> None:
    async with sessionmaker() as session, session.begin():
        if not await tallies.uncounted(session, workspace_id=workspace_id, journey_id=journey_id):
            return
        # Held exclusively: no fact commits while the facts are counted, so the consumers' deltas
        # start exactly where the count ends (READ COMMITTED then reads one state).
        await session.execute(tallies.HOLD_EXCLUSIVE, {"w": workspace_id})
        config = await load_config(session, workspace_id=workspace_id)
        await tallies.count(
            session,
            workspace_id=workspace_id,
            scopes=await tallies.uncounted(session, workspace_id=workspace_id, journey_id=journey_id),
            conversions=list(config.conversion_outcomes),
        )


async def _store(
    sessionmaker: async_sessionmaker[AsyncSession],
    workspace_id: str,
    journey_id: UUID,
    build: Callable[[AsyncSession], Awaitable[list[_Scored] | None]],
    *,
    fitted: bool,
    lease: tuple[Lane, UUID] | None,
) -> list[Scores] | None:
    """Store the snapshots `build` makes (None: it cannot), and their events. The stores of the two
    lanes for one journey take turns, and `build` runs in its turn."""
    snapshots: list[Scores] = []
    now = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        await session.execute(_STORING, {"j": str(journey_id)})
        if lease is not None:
            lane, token = lease
            held = {"w": workspace_id, "j": journey_id, "lease": token}
            if (await session.execute(lane.sql(_HOLDS), held)).first() is None:
                log.warning(
                    "lease lost; the newer holder stores", workspace_id=workspace_id, journey_id=str(journey_id)
                )
                return []
        scored = await build(session)
        if scored is None:
            return None
        as_of = await _as_of(session, workspace_id)
        for item in scored:
            scope, body = item.scope, item.body
            snapshot_id = new_ids(1)[0]
            scores = Scores.model_validate(
                {
                    **body,
                    "snapshot_id": snapshot_id,
                    "scope": {"persona_id": scope.persona_id, "since": scope.since, "until": scope.until},
                    "computed_at": now,
                    "as_of": as_of,
                    "fitted_at": now if fitted else item.fitted_at,
                }
            )
            payload = scores.__pydantic_serializer__.to_json(scores)
            version = await session.scalar(
                _INSERT_SNAPSHOT,
                {"id": snapshot_id, "w": workspace_id, "j": journey_id, "scope": scope.id, "at": now, "body": payload},
            )
            default = scope.persona_id is None and scope.since is None and scope.until is None
            if default and item.conversion_value is not None:  # a fit's (a refresh carries the relevance)
                await _keep_relevance(session, workspace_id, scores, item.conversion_value)
            await emit(
                session,
                workspace_id=workspace_id,
                type=SCORE_UPDATED,
                data=score_updated(scores, scope_id=scope.id),
                aggregate_id=scope.id,
                version=version,
            )
            snapshots.append(scores)
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


def _outgrown(scores: Scores) -> bool:
    """Fit now rather than after the refit delay: the customers counted have doubled since the fit (a
    young journey's first customers, a backfill), so its models say little about them."""
    return scores.counts.customers > 0 and scores.counts.customers >= 2 * scores.fit_counts.customers


class RecomputeWorker(LoopWorker):
    """One lane: refreshes (`REFRESH`) or fits (`FIT`) the next due journey; sleeps until the next
    one is due, or until a consumer's commit wakes it."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: ScoringSettings, lane: Lane) -> None:
        super().__init__(idle_seconds=settings.worker_poll_seconds)
        self._sessionmaker, self._settings, self._lane = sessionmaker, settings, lane
        self.name = lane.name

    async def run_once(self) -> bool:
        s, lane = self._settings, self._lane
        token = uuid.uuid4()
        async with self._sessionmaker() as session, session.begin():
            claimed = (
                await session.execute(lane.sql(_CLAIM), {"seconds": s.recompute_lease_seconds, "lease": token})
            ).first()
            if claimed is None:
                wait = await session.scalar(lane.sql(_NEXT_DUE))
        if claimed is None:
            if wait is not None and float(wait) < s.worker_poll_seconds:
                await asyncio.sleep(max(0.0, float(wait)))
                return True
            return False
        w, j = claimed
        held = {"w": w, "j": j, "lease": token}
        renewing = asyncio.create_task(self._renew(held))
        retry = None
        try:
            if lane is FIT:
                await score_journey(
                    self._sessionmaker,
                    workspace_id=w,
                    journey_id=j,
                    bootstrap=s.bootstrap_replicates,
                    lease=(lane, token),
                )
            else:
                refreshed = await refresh_journey(self._sessionmaker, workspace_id=w, journey_id=j, lease=(lane, token))
                if refreshed is None or any(_outgrown(scores) for scores in refreshed):
                    async with self._sessionmaker() as session, session.begin():
                        await session.execute(_FIT_NOW, held)
        except Exception:
            retry = _RETRY_SECONDS  # kept: scored again later
            raise
        finally:
            renewing.cancel()
            async with self._sessionmaker() as session, session.begin():
                await session.execute(lane.sql(_RELEASE), {**held, "retry": retry})
                await session.execute(_FORGET, held)
        return True

    async def _renew(self, held: dict[str, Any]) -> None:
        """Keep the lease while the journey is scored: only a replica that died loses it."""
        seconds = self._settings.recompute_lease_seconds
        while True:
            await asyncio.sleep(seconds / 3)
            async with self._sessionmaker() as session, session.begin():
                await session.execute(self._lane.sql(_RENEW), {**held, "seconds": seconds})
