"""The journey's scoring snapshot beyond its health and its steps' scores: the portfolio of its
touchpoints, its moments of truth and its attribution, as the scoring service's portfolio,
moments-of-truth and attribution routes answer parts of the same snapshot. They read the snapshot the
view reads anyway (`Context.scores`, one batch call for every journey of the query)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from gateway.analytics import from_answer
from gateway.measures import when

if TYPE_CHECKING:
    from gateway.schema import Context, Journey


@strawberry.type
class PortfolioQuadrant:
    quadrant: str = strawberry.field(description="core, lever, hygiene, reconsider or `no data`.")
    touchpoint_ids: list[strawberry.ID]


@strawberry.type(description="Quadrants on relevance × reach, budget burners (scoring); null before the first scores.")
class Portfolio:
    relevance_threshold: float | None
    reach_threshold: float | None
    quadrants: list[PortfolioQuadrant]
    budget_burners: list[strawberry.ID] = strawberry.field(description="By cost ÷ relevance, highest first.")
    as_of: datetime | None


@strawberry.type(description="Moments of truth measured vs designed (scoring service); null before the first scores.")
class MomentsOfTruth:
    coverage: float
    confirmed: list[strawberry.ID]
    unconfirmed: list[strawberry.ID] = strawberry.field(description="Designed, not supported by the data.")
    undiscovered: list[strawberry.ID] = strawberry.field(description="Supported by the data, not designed.")
    as_of: datetime | None


@strawberry.enum
class AttributionModel(enum.Enum):
    FIRST = "first"
    LAST = "last"
    LINEAR = "linear"
    POSITION_BASED = "position_based"
    TIME_DECAY = "time_decay"
    MARKOV = "markov"
    SHAPLEY = "shapley"


@strawberry.type
class AttributionCredit:
    touchpoint_id: strawberry.ID
    credit: float | None = strawberry.field(description="Conversions credited to the touchpoint.")
    low: float | None
    high: float | None
    removal_effect: float | None = strawberry.field(description="Markov only: 1 − P(conversion without it) ÷ P.")


@strawberry.type(description="Conversions shared out by one model (not relevance); null before the first scores.")
class Attribution:
    model: AttributionModel
    credits: list[AttributionCredit]
    conversions: int
    paths: int
    conversion_probability: float | None
    method: str
    as_of: datetime | None


async def journey_portfolio(root: Journey, info: strawberry.Info[Context, None]) -> Portfolio | None:
    scores = await info.context.scores.load(str(root.id))
    if scores is None:
        return None
    p = scores["portfolio"]
    quadrants = [PortfolioQuadrant(quadrant=q, touchpoint_ids=ids) for q, ids in p["quadrants"].items()]
    return from_answer(Portfolio, p, quadrants=quadrants, as_of=when(scores["as_of"]))


async def journey_moments_of_truth(root: Journey, info: strawberry.Info[Context, None]) -> MomentsOfTruth | None:
    scores = await info.context.scores.load(str(root.id))
    return from_answer(MomentsOfTruth, scores["moments_of_truth"], as_of=when(scores["as_of"])) if scores else None


async def journey_attribution(
    root: Journey,
    info: strawberry.Info[Context, None],
    model: Annotated[AttributionModel | None, strawberry.argument(description="One model (omit: all).")] = None,
) -> list[Attribution] | None:
    scores = await info.context.scores.load(str(root.id))
    if scores is None:
        return None
    as_of, out = when(scores["as_of"]), []
    for a in scores["attribution"]:
        if model is None or a["model"] == model.value:
            removal = a.get("removal_effect") or {}
            credits = [AttributionCredit(touchpoint_id=t, credit=c, low=a["low"].get(t), high=a["high"].get(t),
                                         removal_effect=removal.get(t)) for t, c in a["credit"].items()]  # fmt: skip
            out.append(from_answer(Attribution, a, model=AttributionModel(a["model"]), credits=credits,
                                   conversion_probability=a.get("conversion_probability"), as_of=as_of))  # fmt: skip
    return out
