"""REST routes of the scoring service: a journey's scores and each aspect of them, their history, batch
reads for many journeys or touchpoints, cross-journey priority, recompute, and the workspace's
settings. Reads answer stored snapshots (a GET never computes); every answer says when its snapshot
was computed and up to when its inputs were complete (`as_of`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

import numpy as np
import orjson
from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.responses import Response

from services.common.auth import Caller, caller_with
from services.common.db import SessionDep
from services.common.errors import PROBLEM_RESPONSES, NotFound, Unprocessable
from services.common.idempotency import IdempotencyDep
from services.common.pagination import CursorQuery, LimitQuery, Page, decode_cursor, encode_cursor
from services.common.timestamps import BOUNDS_HELP, TimeQuery
from services.scoring import store
from services.scoring.analytics.portfolio import cross_journey_priority
from services.scoring.models import (
    AttributionModel,
    JourneyRelevance,
    Priority,
    RecomputeRequested,
    ScopeShape,
    Scores,
    ScoreSettings,
    ScoreSettingsPublic,
    SnapshotSummary,
)
from services.scoring.views import (
    AttributionView,
    HealthView,
    MomentsView,
    PainPointsView,
    PortfolioView,
    PriorityBatch,
    RelevanceView,
    ScopeItem,
    ScopeList,
    ScoreMeta,
    ScoresBatch,
)

Reader = Annotated[Caller, caller_with("scores:read")]
Admin = Annotated[Caller, caller_with("admin")]
JourneyId = Annotated[UUID, Path(description="The journey's id.")]
TouchpointId = Annotated[UUID, Path(description="The touchpoint's id.")]
PersonaQuery = Annotated[UUID | None, Query(description="The scope's persona (omit: every customer).")]
SinceQuery = Annotated[TimeQuery | None, Query(description=f"The scope's window start ({BOUNDS_HELP}).")]
UntilQuery = Annotated[TimeQuery | None, Query(description=f"The scope's window end, exclusive ({BOUNDS_HELP}).")]
MAX_BATCH = 100
JourneyIds = Annotated[
    list[UUID], Query(alias="journey_id", min_length=1, max_length=MAX_BATCH, description="Repeatable, up to 100.")
]
TouchpointIds = Annotated[
    list[UUID], Query(alias="touchpoint_id", min_length=1, max_length=MAX_BATCH, description="Repeatable, up to 100.")
]

WeightChoice = Literal["customers", "value"]

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES)


def _scope(persona_id: PersonaQuery = None, since: SinceQuery = None, until: UntilQuery = None) -> ScopeShape:
    """The scope named by the query (or a recompute's body): a persona and a window, each optional."""
    if since is not None and until is not None and since >= until:
        raise Unprocessable(
            "`since` must be before `until`.", errors=[{"field": "query.until", "message": "not after since"}]
        )
    return ScopeShape(persona_id=persona_id, since=since, until=until)


ScopeDep = Annotated[ScopeShape, Depends(_scope)]


async def _require_journey(session: Any, caller: Caller, journey_id: UUID) -> None:
    if not await store.journey_known(session, workspace_id=caller.workspace_id, journey_id=journey_id):
        raise NotFound(f"No journey {journey_id} in this workspace (deleted, or its events have not arrived yet).")


async def _scores(session: Any, caller: Caller, journey_id: UUID, scope: ScopeShape) -> Scores:
    found = await store.latest_snapshots(
        session, workspace_id=caller.workspace_id, journey_ids=[journey_id], scope=scope
    )
    if journey_id not in found:
        await _require_journey(session, caller, journey_id)
        raise NotFound(
            f"Journey {journey_id} has no scores in this scope yet: they follow its events within seconds; for a "
            "new scope (a persona, a window) POST /v1/journeys/{id}/recompute with it first."
        )
    return Scores.model_validate_json(found[journey_id])


def _meta(s: Scores) -> dict[str, Any]:
    return {k: getattr(s, k) for k in ScoreMeta.model_fields}


@router.get("/journeys/{journey_id}/scores", tags=["scores"])
async def get_journey_scores(
    caller: Reader,
    session: SessionDep,
    journey_id: JourneyId,
    scope: ScopeDep,
) -> Scores:
    """A journey's latest scores in a scope: every touchpoint, portfolio, moments of truth, health, attribution."""
    return await _scores(session, caller, journey_id, scope)


@router.get("/journeys/{journey_id}/relevance", tags=["scores"])
async def get_journey_relevance(
    caller: Reader,
    session: SessionDep,
    journey_id: JourneyId,
    scope: ScopeDep,
) -> RelevanceView:
    """Relevance and reach of each touchpoint, with the effects and key-driver weights behind them."""
    s = await _scores(session, caller, journey_id, scope)
    return RelevanceView(**_meta(s), relevance_basis=s.relevance_basis, methods=s.methods, touchpoints=s.touchpoints)


@router.get("/journeys/{journey_id}/portfolio", tags=["scores"])
async def get_journey_portfolio(
    caller: Reader,
    session: SessionDep,
    journey_id: JourneyId,
    scope: ScopeDep,
) -> PortfolioView:
    """Each touchpoint's quadrant on relevance × reach, and the budget burners."""
    s = await _scores(session, caller, journey_id, scope)
    return PortfolioView(**_meta(s), portfolio=s.portfolio)


@router.get("/journeys/{journey_id}/moments-of-truth", tags=["scores"])
async def get_journey_moments_of_truth(
    caller: Reader,
    session: SessionDep,
    journey_id: JourneyId,
    scope: ScopeDep,
) -> MomentsView:
    """Moments of truth measured vs designed: confirmed, unconfirmed, undiscovered."""
    s = await _scores(session, caller, journey_id, scope)
    return MomentsView(
        **_meta(s),
        moments_of_truth=s.moments_of_truth,
        touchpoints=[t for t in s.touchpoints if t.moment_of_truth != "none"],
    )


@router.get("/journeys/{journey_id}/pain-points", tags=["scores"])
async def get_journey_pain_points(
    caller: Reader,
    session: SessionDep,
    journey_id: JourneyId,
    scope: ScopeDep,
) -> PainPointsView:
    """Touchpoints with significant relevance and an experience significantly below the journey's."""
    s = await _scores(session, caller, journey_id, scope)
    pains = [t for t in s.touchpoints if t.pain_point.pain_point]
    pains.sort(key=lambda t: -(t.relevance or 0.0))
    return PainPointsView(**_meta(s), touchpoints=pains)


@router.get("/journeys/{journey_id}/health", tags=["scores"])
async def get_journey_health(
    caller: Reader,
    session: SessionDep,
    journey_id: JourneyId,
    scope: ScopeDep,
) -> HealthView:
    """Journey health 0-100 with its components, weights, n and interval."""
    s = await _scores(session, caller, journey_id, scope)
    return HealthView(**_meta(s), health=s.health)


@router.get("/journeys/{journey_id}/attribution", tags=["scores"])
async def get_journey_attribution(
    caller: Reader,
    session: SessionDep,
    journey_id: JourneyId,
    scope: ScopeDep,
    model: Annotated[AttributionModel | None, Query(description="One model (omit: all).")] = None,
) -> AttributionView:
    """Conversions shared out by each attribution model (not relevance: see the relevance route)."""
    s = await _scores(session, caller, journey_id, scope)
    return AttributionView(**_meta(s), attribution=[a for a in s.attribution if model in (None, a.model)])


@router.get("/journeys/{journey_id}/history", tags=["scores"])
async def list_journey_history(
    caller: Reader,
    session: SessionDep,
    journey_id: JourneyId,
    scope: ScopeDep,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> Page[SnapshotSummary]:
    """Every snapshot of the scope, newest first: how health and the counts moved."""
    scope_id = await store.find_scope(session, workspace_id=caller.workspace_id, journey_id=journey_id, scope=scope)
    if scope_id is None:
        raise NotFound(f"Journey {journey_id} has no scores in this scope.")
    rows = await store.history(
        session,
        workspace_id=caller.workspace_id,
        journey_id=journey_id,
        scope_id=scope_id,
        after=decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    items = [
        SnapshotSummary(
            snapshot_id=r.id,
            journey_id=r.journey_id,
            scope_id=r.scope_id,
            version=r.version,
            computed_at=r.computed_at,
            health=None if r.health is None else float(r.health),
            health_low=None if r.health_low is None else float(r.health_low),
            health_high=None if r.health_high is None else float(r.health_high),
            customers=r.customers,
        )
        for r in rows[:limit]
    ]
    return Page[SnapshotSummary](
        items=items, next_cursor=encode_cursor(items[-1].snapshot_id) if len(rows) > limit else None
    )


@router.get("/scores", response_model=ScoresBatch, tags=["scores"])
async def list_scores(
    caller: Reader,
    session: SessionDep,
    journey_ids: JourneyIds,
    scope: ScopeDep,
) -> Response:
    """The latest scores of many journeys in one call (batch read for the gateway)."""
    wanted = list(dict.fromkeys(journey_ids))
    found = await store.latest_snapshots(session, workspace_id=caller.workspace_id, journey_ids=wanted, scope=scope)
    # The stored JSON is served as it is: it was validated against `Scores` when it was written.
    body = b'{"items":[' + b",".join(found[j] for j in wanted if j in found) + b'],"not_scored":'
    body += orjson.dumps([str(j) for j in wanted if j not in found]) + b"}"
    return Response(body, media_type="application/json")


def _priority(rows: list[Any], touchpoint_id: UUID, weight_by: Literal["customers", "value"]) -> Priority:
    """A touchpoint's priority from its relevance rows, its journeys weighed among themselves (so a batch
    answers each touchpoint as its own read does)."""
    rows = [r for r in rows if r.touchpoint_id == touchpoint_id]
    journeys = list(dict.fromkeys(r.journey_id for r in rows))
    j_index = np.array([journeys.index(r.journey_id) for r in rows], dtype=np.int64)
    volume = np.zeros(len(journeys))  # each journey's customers or conversion value
    for r, j in zip(rows, j_index, strict=True):
        volume[j] = float(r.customers if weight_by == "customers" else r.conversion_value)
    priority = low = high = None
    weights = np.zeros(len(journeys))
    # No rows, or no customers (or no conversion value) yet: nothing to weigh, no priority.
    if volume.sum() > 0:

        def col(name: str) -> Any:
            return np.array([np.nan if getattr(r, name) is None else getattr(r, name) for r in rows], dtype=np.float64)

        result = cross_journey_priority(
            touchpoint_index=np.zeros(len(rows), dtype=np.int64),
            journey_index=j_index,
            relevance=col("relevance"),
            relevance_low=col("relevance_low"),
            relevance_high=col("relevance_high"),
            journey_weight=volume,
        )
        priority, low, high = _finite(result.priority[0]), _finite(result.low[0]), _finite(result.high[0])
        weights = result.weights
    return Priority(
        touchpoint_id=touchpoint_id,
        priority=priority,
        low=low,
        high=high,
        weight_by=weight_by,
        journeys=[
            JourneyRelevance(
                journey_id=r.journey_id,
                relevance=r.relevance,
                relevance_low=r.relevance_low,
                relevance_high=r.relevance_high,
                weight=float(weights[j]),
                snapshot_id=r.snapshot_id,
            )
            for r, j in zip(rows, j_index, strict=True)
        ],
    )


def _finite(x: Any) -> float | None:
    return float(x) if np.isfinite(x) else None


WeightBy = Annotated[
    WeightChoice,
    Query(description="Weigh each journey by its customers (volume) or by its conversions' value."),
]


@router.get("/touchpoints/{touchpoint_id}/priority", tags=["priority"])
async def get_touchpoint_priority(
    caller: Reader, session: SessionDep, touchpoint_id: TouchpointId, weight_by: WeightBy = "customers"
) -> Priority:
    """A touchpoint's priority across every journey it serves (the global optimum, not one owner's)."""
    rows = await store.relevance_rows(session, workspace_id=caller.workspace_id, touchpoint_ids=[touchpoint_id])
    return _priority(rows, touchpoint_id, weight_by)


@router.get("/priorities", tags=["priority"])
async def list_priorities(
    caller: Reader, session: SessionDep, touchpoint_ids: TouchpointIds, weight_by: WeightBy = "customers"
) -> PriorityBatch:
    """Cross-journey priority of many touchpoints in one call (batch read for the gateway)."""
    wanted = list(dict.fromkeys(touchpoint_ids))
    rows = await store.relevance_rows(session, workspace_id=caller.workspace_id, touchpoint_ids=wanted)
    return PriorityBatch(items=[_priority(rows, t, weight_by) for t in wanted])


@router.get("/journeys/{journey_id}/scopes", tags=["scores"])
async def list_journey_scopes(caller: Reader, session: SessionDep, journey_id: JourneyId) -> ScopeList:
    """The scopes the journey's scores are kept up to date in."""
    await _require_journey(session, caller, journey_id)
    rows = await store.list_scopes(session, workspace_id=caller.workspace_id, journey_id=journey_id)
    return ScopeList(
        items=[ScopeItem(scope_id=r.id, persona_id=r.persona_id, since=r.since, until=r.until) for r in rows]
    )


@router.delete("/journeys/{journey_id}/scopes", status_code=204, tags=["scores"])
async def remove_journey_scope(caller: Reader, session: SessionDep, journey_id: JourneyId, scope: ScopeDep) -> Response:
    """Stop keeping the journey's scores in this scope, and forget its snapshots (the default scope stays)."""
    if scope == ScopeShape():
        raise Unprocessable(
            "The default scope (every customer, all time) is always kept; name a persona_id, since or until.",
            errors=[{"field": "query", "message": "names no scope"}],
        )
    scope_id = await store.find_scope(session, workspace_id=caller.workspace_id, journey_id=journey_id, scope=scope)
    if scope_id is None:
        raise NotFound(f"Journey {journey_id} has no such scope (GET /v1/journeys/{journey_id}/scopes lists them).")
    await store.remove_scope(session, workspace_id=caller.workspace_id, journey_id=journey_id, scope_id=scope_id)
    return Response(status_code=204)


@router.post("/journeys/{journey_id}/recompute", status_code=202, response_model=RecomputeRequested, tags=["scores"])
async def recompute_journey(
    caller: Reader,
    idem: IdempotencyDep,
    session: SessionDep,
    journey_id: JourneyId,
    body: Annotated[ScopeShape | None, Body(description="A scope to add (omit: the default one).")] = None,
) -> Response:
    """Score the journey now (every scope it has, plus this one: it is then kept up to date)."""
    scope = _scope(*(body.persona_id, body.since, body.until)) if body else ScopeShape()
    await _require_journey(session, caller, journey_id)
    scope_id, due_at = await store.request_recompute(
        session, workspace_id=caller.workspace_id, journey_id=journey_id, scope=scope
    )
    answer = RecomputeRequested(journey_id=journey_id, scope_id=scope_id, scope=scope, due_at=due_at)
    return await idem.respond(answer, status_code=202)


@router.get("/settings", tags=["settings"])
async def get_settings(caller: Reader, session: SessionDep) -> ScoreSettingsPublic:
    """The workspace's scoring settings (defaults until changed)."""
    return await store.load_settings(session, workspace_id=caller.workspace_id)


@router.put("/settings", tags=["settings"])
async def put_settings(caller: Admin, session: SessionDep, body: ScoreSettings) -> ScoreSettingsPublic:
    """Change the scoring settings; every journey of the workspace is scored again with them."""
    if not any(v > 0 for v in body.health_weights.values()) or any(v < 0 for v in body.health_weights.values()):
        raise Unprocessable(
            "Health weights must be non-negative and not all 0.",
            errors=[{"field": "body.health_weights", "message": "non-negative, not all 0"}],
        )
    return await store.save_settings(session, workspace_id=caller.workspace_id, settings=body)
