"""REST routes of the derived views: customer DNA and timeline; journey funnel, paths and reach."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query

from services.common.auth import Caller, caller_with
from services.common.db import SessionDep
from services.common.errors import PROBLEM_RESPONSES
from services.common.pagination import CURSOR_HELP, LimitQuery, cursor_pattern
from services.common.timestamps import BOUNDS_HELP, TimeQuery
from services.journey.api.customers import ExternalIdPath
from services.journey.models import (
    Breakdown,
    Collapse,
    CustomerDna,
    Funnel,
    PathLevel,
    Paths,
    Reach,
    SourceChoice,
    Timeline,
    WindowFrom,
)
from services.journey.store import customers
from services.journey.store.analytics import customer, funnel, paths, reach

Reader = Annotated[Caller, caller_with("journeys:read")]
JourneyId = Annotated[UUID, Path(description="The journey's id.")]
Since = Annotated[
    TimeQuery | None, Query(description=f"Only events at or after this time ({BOUNDS_HELP}; no offset: UTC).")
]
Until = Annotated[TimeQuery | None, Query(description=f"Only events before this time ({BOUNDS_HELP}; no offset: UTC).")]
FromSource = Annotated[
    SourceChoice,
    Query(
        description="auto: the journey's per-customer projection as it is (see `as_of`), unless it cannot answer "
        "the request; events: always computed from the interactions (slower; to check the projection against them).",
    ),
]

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES)


@router.get("/customers/{external_id}/dna", tags=["customers"])
async def get_customer_dna(caller: Reader, session: SessionDep, external_id: ExternalIdPath) -> CustomerDna:
    """A customer's DNA: per journey the stage reached, channels, touchpoints met; visitor type."""
    return await customer.customer_dna(session, workspace_id=caller.workspace_id, external_id=external_id)


TimelineCursorQuery = Annotated[  # a time and an id
    str | None, Query(pattern=cursor_pattern(customer.TIMELINE_CURSOR_BYTES), description=CURSOR_HELP)
]


@router.get("/customers/{external_id}/timeline", tags=["customers"])
async def get_customer_timeline(
    caller: Reader,
    session: SessionDep,
    external_id: ExternalIdPath,
    cursor: TimelineCursorQuery = None,
    limit: LimitQuery = 50,
) -> Timeline:
    """A customer's interactions and outcomes, newest first."""
    customer_id = await customers.customer_id(session, workspace_id=caller.workspace_id, external_id=external_id)
    return await customer.customer_timeline(
        session, workspace_id=caller.workspace_id, customer_id=customer_id, cursor=cursor, limit=limit
    )


@router.get("/journeys/{journey_id}/funnel", tags=["analytics"])
async def get_journey_funnel(
    caller: Reader,
    session: SessionDep,
    journey_id: JourneyId,
    window_hours: Annotated[float, Query(gt=0, le=87_600, description="Conversion window in hours.")] = 720,
    window_from: Annotated[
        WindowFrom, Query(description="Count the window from the first stage, or from the previous stage per step.")
    ] = WindowFrom.first_stage,
    since: Since = None,
    until: Until = None,
    breakdown: Annotated[Breakdown, Query(description="One funnel per persona or per entry channel.")] = Breakdown.none,
    source: FromSource = SourceChoice.auto,
) -> Funnel:
    """Customers reaching each stage in order: conversion, drop-off, median time between stages."""
    return await funnel.journey_funnel(
        session,
        workspace_id=caller.workspace_id,
        journey_id=journey_id,
        window_hours=window_hours,
        window_from=window_from,
        since=since,
        until=until,
        breakdown=breakdown,
        source=source,
    )


@router.get("/journeys/{journey_id}/paths", tags=["analytics"])
async def get_journey_paths(
    caller: Reader,
    session: SessionDep,
    journey_id: JourneyId,
    level: Annotated[PathLevel, Query(description="Paths through stages or through touchpoints.")] = PathLevel.stages,
    collapse: Annotated[
        Collapse, Query(description="none; repeats: A A B → A B; revisits: A B A C → A B C.")
    ] = Collapse.repeats,
    top: Annotated[int, Query(ge=1, le=100, description="How many paths (k).")] = 10,
    max_length: Annotated[int, Query(ge=1, le=50, description="Cut paths after this many nodes.")] = 10,
    since: Since = None,
    until: Until = None,
    source: FromSource = SourceChoice.auto,
) -> Paths:
    """The top-k paths with counts, as nodes and links for a Sankey diagram."""
    return await paths.journey_paths(
        session,
        workspace_id=caller.workspace_id,
        journey_id=journey_id,
        level=level,
        collapse=collapse,
        top=top,
        max_length=max_length,
        since=since,
        until=until,
        source=source,
    )


@router.get("/journeys/{journey_id}/reach", tags=["analytics"])
async def get_journey_reach(
    caller: Reader, session: SessionDep, journey_id: JourneyId, since: Since = None, until: Until = None
) -> Reach:
    """Per step: distinct customers who met its touchpoint ÷ customers in the journey."""
    return await reach.journey_reach(
        session, workspace_id=caller.workspace_id, journey_id=journey_id, since=since, until=until
    )
