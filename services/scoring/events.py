"""Events the scoring service publishes: `scoring.score.updated` for every new snapshot.

The aggregate is the score scope (a journey's default scope, or one a caller added: a persona, a
window); its version counts that scope's snapshots. The event carries the summary a subscriber needs
(health, counts, each touchpoint's relevance, reach and quadrant); the whole snapshot is
`GET /v1/journeys/{journey_id}/scores`.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel

from services.scoring.models import Counts, Quadrant, ScopeShape, Scores

SCORE_UPDATED = "scoring.score.updated"


class TouchpointSummary(BaseModel):
    touchpoint_id: UUID
    key: str
    relevance: float | None
    relevance_significant: bool
    reach: float
    quadrant: Quadrant


class ScoreUpdated(BaseModel):
    snapshot_id: UUID
    scope_id: UUID
    journey_id: UUID
    journey_key: str
    scope: ScopeShape
    computed_at: datetime
    as_of: datetime | None
    fitted_at: datetime
    health: float | None
    health_low: float | None
    health_high: float | None
    counts: Counts
    touchpoints: list[TouchpointSummary]


def score_updated(scores: Scores, *, scope_id: UUID) -> ScoreUpdated:
    return ScoreUpdated(
        snapshot_id=scores.snapshot_id,
        scope_id=scope_id,
        journey_id=scores.journey_id,
        journey_key=scores.journey_key,
        scope=scores.scope,
        computed_at=scores.computed_at,
        as_of=scores.as_of,
        fitted_at=scores.fitted_at,
        health=scores.health.score,
        health_low=scores.health.low,
        health_high=scores.health.high,
        counts=scores.counts,
        touchpoints=[
            TouchpointSummary(
                touchpoint_id=t.touchpoint_id,
                key=t.key,
                relevance=t.relevance,
                relevance_significant=t.relevance_significant,
                reach=t.reach,
                quadrant=t.quadrant,
            )
            for t in scores.touchpoints
        ],
    )


PUBLISHED: dict[str, type[BaseModel]] = {SCORE_UPDATED: ScoreUpdated}
