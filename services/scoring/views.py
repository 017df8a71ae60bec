"""The shapes of the scoring API's answers that are parts of a snapshot, or lists of them."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, Field

from services.scoring.models import (
    MAX_SCOPES,
    Attribution,
    Health,
    MomentsOfTruth,
    Portfolio,
    Priority,
    ScopeShape,
    Scores,
    TouchpointScore,
)


class ScoreMeta(BaseModel):
    snapshot_id: UUID
    journey_id: UUID
    scope: ScopeShape
    computed_at: datetime
    as_of: datetime | None
    flags: list[str]


class RelevanceView(ScoreMeta):
    relevance_basis: str
    methods: dict[str, str]
    touchpoints: list[TouchpointScore]


class PortfolioView(ScoreMeta):
    portfolio: Portfolio


class MomentsView(ScoreMeta):
    moments_of_truth: MomentsOfTruth
    touchpoints: list[TouchpointScore] = Field(description="The touchpoints named in any of the three lists.")


class PainPointsView(ScoreMeta):
    touchpoints: list[TouchpointScore] = Field(description="The pain points, most relevant first.")


class HealthView(ScoreMeta):
    health: Health


class AttributionView(ScoreMeta):
    attribution: list[Attribution]


class ScoresBatch(BaseModel):
    items: list[Scores]
    not_scored: list[UUID] = Field(description="Asked for, but without scores in this scope (unknown or not yet).")


class PriorityBatch(BaseModel):
    items: list[Priority]


class ScopeItem(ScopeShape):
    scope_id: UUID


class ScopeList(BaseModel):
    items: list[ScopeItem] = Field(description=f"Oldest first, the default one first; at most {MAX_SCOPES}.")
