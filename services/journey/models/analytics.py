"""Shapes of the derived views: customer DNA, timeline, funnel, paths and reach (read-only, no tables)."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from services.common.vocabulary import Channel
from services.journey.models._base import Shape
from services.journey.models.customers import VisitorType

# DNA --------------------------------------------------------------------------------------------


class ChannelCount(Shape):
    channel: Channel
    interactions: int


class TouchpointMet(Shape):
    touchpoint: str
    touchpoint_id: UUID
    interactions: int
    first_at: datetime
    last_at: datetime


class StageRef(Shape):
    id: UUID
    key: str
    name: str
    position: int


class JourneyDna(Shape):
    journey_id: UUID
    journey: str
    name: str
    member_by: list[Literal["interaction", "persona"]]
    stage_reached: StageRef | None = Field(description="The furthest stage met; null when only the persona matches.")
    interactions: int
    channels: list[ChannelCount]
    touchpoints: list[TouchpointMet] = Field(description="In the order first met.")
    first_seen: datetime | None
    last_seen: datetime | None


class OutcomeCount(Shape):
    name: str
    count: int
    value: Decimal | None


class CustomerDna(Shape):
    customer_id: UUID
    external_id: str
    persona_id: UUID | None
    persona_key: str | None
    visitor_type: VisitorType
    visits: int = Field(description="Runs of interactions separated by more than 30 minutes of inactivity.")
    interactions: int
    first_seen: datetime | None
    last_seen: datetime | None
    channels: list[ChannelCount]
    outcomes: list[OutcomeCount]
    journeys: list[JourneyDna]


# Timeline ---------------------------------------------------------------------------------------


class TimelineItem(Shape):
    kind: Literal["interaction", "outcome"]
    id: UUID
    event_id: str
    occurred_at: datetime
    touchpoint: str | None
    channel: Channel | None
    journey: str | None
    name: str | None = Field(description="Outcome name (outcomes only).")
    value: Decimal | None
    currency: str | None
    properties: dict[str, Any]


class Timeline(Shape):
    items: list[TimelineItem]
    next_cursor: str | None


# Funnel -----------------------------------------------------------------------------------------

Source = Literal["projection", "events"]
SOURCE_DESCRIPTION = (
    "projection: read from the journey's per-customer projection, built from the service's events in the "
    "background (every request but a funnel with a channel breakdown and `since`); events: computed "
    "from the interactions at read time."
)
AS_OF_DESCRIPTION = (
    "The answer is complete up to this time: the time of the last event its projection applied (for "
    "a journey whose structure changed and is being rebuilt, at most when it changed); the read time "
    "when computed from the interactions; null when the projection has not been built yet (the counts "
    "are then empty)."
)


class SourceChoice(enum.StrEnum):
    """Where a funnel or paths request may be answered from."""

    auto = "auto"  # the projection as it is (see `as_of`), unless it cannot answer the request
    events = "events"  # always the interactions: slower; to check the projection against them


class WindowFrom(enum.StrEnum):
    first_stage = "first_stage"
    previous_stage = "previous_stage"


class Breakdown(enum.StrEnum):
    none = "none"
    persona = "persona"
    channel = "channel"


class FunnelStage(Shape):
    stage: StageRef
    customers: int
    conversion_from_previous: float | None = Field(
        description="Share of the previous stage's customers; null at the first."
    )
    conversion_overall: float | None = Field(description="Share of the first stage's customers.")
    drop_off: int = Field(description="Customers of the previous stage who did not reach this one.")
    median_seconds_from_previous: float | None


class FunnelGroup(Shape):
    group: str | None = Field(description="Persona key or entry channel; null: no persona / the whole funnel.")
    stages: list[FunnelStage]


class Funnel(Shape):
    journey_id: UUID
    window_hours: float
    window_from: WindowFrom
    since: datetime | None
    until: datetime | None
    breakdown: Breakdown
    groups: list[FunnelGroup]
    source: Source = Field(default="events", description=SOURCE_DESCRIPTION)
    as_of: datetime | None = Field(default=None, description=AS_OF_DESCRIPTION)


# Paths ------------------------------------------------------------------------------------------


class PathLevel(enum.StrEnum):
    stages = "stages"
    touchpoints = "touchpoints"


class Collapse(enum.StrEnum):
    none = "none"
    repeats = "repeats"
    revisits = "revisits"


class PathCount(Shape):
    nodes: list[str]
    customers: int
    share: float


class SankeyNode(Shape):
    id: str = Field(description="`<depth>:<key>`, unique per depth so the diagram stays acyclic.")
    key: str
    depth: int
    customers: int


class SankeyLink(Shape):
    source: str
    target: str
    customers: int


class Paths(Shape):
    journey_id: UUID
    level: PathLevel
    collapse: Collapse
    customers: int = Field(description="Customers with at least one event in the journey.")
    other_customers: int = Field(description="Customers whose path is not among the top k.")
    paths: list[PathCount]
    nodes: list[SankeyNode]
    links: list[SankeyLink]
    source: Source = Field(default="events", description=SOURCE_DESCRIPTION)
    as_of: datetime | None = Field(default=None, description=AS_OF_DESCRIPTION)


# Reach ------------------------------------------------------------------------------------------


class StepReach(Shape):
    step_id: UUID
    stage: str
    touchpoint: str
    touchpoint_id: UUID
    customers: int
    reach: float | None


class Reach(Shape):
    journey_id: UUID
    since: datetime | None
    until: datetime | None
    journey_customers: int = Field(description="Customers in the journey: met one of its touchpoints, or its persona.")
    steps: list[StepReach]
    as_of: datetime | None = Field(
        default=None,
        description="Complete up to this time: without a time range, reach reads the customer × touchpoint "
        "projection (the time of the last event it applied); with one, the interactions (the read time).",
    )
