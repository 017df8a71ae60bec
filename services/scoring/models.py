"""The scoring service's API shapes. A snapshot (`Scores`) is stored as served; the per-aspect routes
answer parts of it. Every number carries its n, its 95 % interval and the method that made it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from services.common.timestamps import BOUNDS_HELP, Timestamp
from services.common.validation import InputModel

Quadrant = Literal["core", "lever", "hygiene", "reconsider", "no data"]
MotStatus = Literal["confirmed", "unconfirmed", "undiscovered", "none"]
AttributionModel = Literal["first", "last", "linear", "position_based", "time_decay", "markov", "shapley"]
RelevanceBasis = Literal["nps", "conversion", "drivers"]
HealthComponentName = Literal["nps", "conversion", "drop_off", "effort"]
DEFAULT_HEALTH_WEIGHTS: dict[HealthComponentName, float] = {
    "nps": 0.4,
    "conversion": 0.3,
    "drop_off": 0.15,
    "effort": 0.15,
}


class Shape(BaseModel):
    # No NaN or infinity: JSON has none, and a score without a value is null.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Estimate(Shape):
    value: float | None
    low: float | None
    high: float | None
    n: int


class Effect(Shape):
    """The effect of having met the touchpoint, the other touchpoints held constant."""

    effect: float | None = Field(description="NPS points (NPS model) or percentage points of conversion.")
    low: float | None
    high: float | None
    p_value: float | None
    n_exposed: int
    estimable: bool


class Driver(Shape):
    """Key-driver importance of the touchpoint's rating (CSAT) for likelihood to recommend."""

    relative_weight: float
    low: float
    high: float
    lmg: float | None = Field(description="Shapley/LMG share of R²; null above the exact limit (see method).")
    lmg_low: float | None
    lmg_high: float | None
    n_rated: int
    significant: bool


class FailureImpact(Shape):
    n_bad: int = Field(description="Customers who had a bad experience here (CSAT ≤ 2 or CES ≥ 5).")
    nps_difference: float | None = Field(description="NPS of those customers minus the others who met it.")
    low: float | None
    high: float | None
    p_value: float | None
    damaging: bool


class PainPoint(Shape):
    pain_point: bool
    csat_difference: float | None = Field(description="Its CSAT minus the rest of the journey's, in points.")
    low: float | None
    high: float | None
    p_value: float | None


class TouchpointScore(Shape):
    touchpoint_id: UUID
    key: str
    name: str
    channel: str
    stages: list[str]
    reach: float = Field(description="Customers who met it ÷ customers in the journey.")
    reach_n: int
    relevance: float | None = Field(description="Magnitude of its effect on the outcome (see `relevance_basis`).")
    relevance_low: float | None
    relevance_high: float | None
    relevance_significant: bool
    nps_effect: Effect
    conversion_effect: Effect
    driver: Driver | None
    csat: Estimate
    ces: Estimate
    quadrant: Quadrant
    yearly_cost: str | None
    currency: str
    cost_per_relevance: float | None = Field(description="Yearly cost ÷ relevance; null without a cost or effect.")
    budget_burner: bool
    keep_despite_low_relevance: bool = Field(description="Would be a burner, but failing here does damage.")
    failure_impact: FailureImpact
    designed_moment_of_truth: bool
    measured_moment_of_truth: bool
    moment_of_truth: MotStatus
    pain_point: PainPoint
    small_sample: bool = Field(description="Fewer customers met it than the estimates need (see `flags`).")


class HealthComponent(Shape):
    name: str
    score: float = Field(description="0-100.")
    low: float | None
    high: float | None
    n: int
    weight: float
    raw: float | None = Field(description="NPS (-100..100), the conversion or drop-off rate (0-1), or mean CES (1-7).")


class Health(Shape):
    score: float | None = Field(description="0-100, the weighted composite of the components.")
    low: float | None
    high: float | None
    n: int
    components: list[HealthComponent]
    weights: dict[str, float]
    method: str


class Attribution(Shape):
    model: AttributionModel
    credit: dict[str, float | None] = Field(
        description="Touchpoint id → conversions credited (they sum to conversions)."
    )
    low: dict[str, float | None]
    high: dict[str, float | None]
    conversions: int
    paths: int
    removal_effect: dict[str, float | None] | None = Field(
        default=None, description="Markov: 1 − P(conversion without it) ÷ P(conversion); null without conversions."
    )
    conversion_probability: float | None = None
    method: str


class Counts(Shape):
    customers: int
    interactions: int
    responses: int
    ltr_customers: int = Field(description="Customers with a likelihood-to-recommend answer.")
    conversions: int


class Portfolio(Shape):
    relevance_threshold: float | None
    reach_threshold: float | None
    quadrants: dict[str, list[UUID]]
    budget_burners: list[UUID] = Field(description="Ordered by cost ÷ relevance, highest first.")


class MomentsOfTruth(Shape):
    coverage: float
    confirmed: list[UUID]
    unconfirmed: list[UUID] = Field(description="Designed as moments of truth, not supported by the data.")
    undiscovered: list[UUID] = Field(description="Supported by the data, not designed.")


MAX_SCOPES = 20  # per journey, the default one included: each is rescored with every change


class ScopeShape(InputModel):
    persona_id: UUID | None = Field(default=None, description="Only this persona's customers.")
    since: Timestamp | None = Field(default=None, description=f"Events at or after this time ({BOUNDS_HELP}).")
    until: Timestamp | None = Field(default=None, description=f"Events before this time ({BOUNDS_HELP}).")


class Scores(Shape):
    snapshot_id: UUID
    journey_id: UUID
    journey_key: str
    scope: ScopeShape
    computed_at: datetime
    as_of: datetime | None = Field(description="Complete up to the events applied by this time.")
    fitted_at: datetime = Field(
        description="When the models (effects, key drivers, relevance, attribution, moments of truth) were "
        "last fitted. The counts and what follows from them (reach, CSAT, CES, health, quadrants, pain points) "
        "follow the events within the debounce; a refit follows within `refit_seconds`."
    )
    counts: Counts
    fit_counts: Counts = Field(description="The counts the models were fitted on (`counts` may have moved on since).")
    relevance_basis: RelevanceBasis
    methods: dict[str, str]
    r2: Estimate | None = Field(description="R² of likelihood to recommend on the touchpoint ratings.")
    touchpoints: list[TouchpointScore]
    portfolio: Portfolio
    moments_of_truth: MomentsOfTruth
    pain_points: list[UUID]
    health: Health
    attribution: list[Attribution]
    flags: list[str] = Field(description="What to read with care: small samples, missing inputs.")
    fit_flags: list[str] = Field(description="Those of the flags the fit raised (carried with it).")


class ScoreSettings(InputModel):
    """How a workspace scores its journeys. Changing them rescores every journey."""

    model_config = ConfigDict(allow_inf_nan=False)  # JSON's NaN/Infinity would be stored as null

    relevance_basis: RelevanceBasis = Field(
        default="nps",
        description="What relevance measures: the effect of having met a touchpoint on NPS (points) or on "
        "conversion (percentage points), or the key-driver weight of its rating for likelihood to recommend.",
    )
    health_weights: dict[HealthComponentName, float] = Field(
        default_factory=lambda: dict(DEFAULT_HEALTH_WEIGHTS),
        description="Weights of the health components (non-negative, not all 0; normalised to sum 1).",
    )
    relevance_threshold: float | None = Field(default=None, ge=0, description="Portfolio split; null: the median.")
    reach_threshold: float | None = Field(default=None, ge=0, le=1, description="Portfolio split; null: the median.")
    moment_of_truth_coverage: float = Field(
        default=0.8, gt=0, le=1, description="Share of total relevance the measured moments of truth cover."
    )
    conversion_outcomes: list[str] = Field(
        default_factory=lambda: ["purchase", "conversion"],
        min_length=1,
        max_length=20,
        description="Outcome names that count as a conversion.",
    )
    min_sample: int = Field(default=30, ge=1, le=100_000, description="Below this n a score is flagged.")


class ScoreSettingsPublic(ScoreSettings):
    version: int
    updated_at: datetime | None


class RecomputeRequested(Shape):
    journey_id: UUID
    scope_id: UUID
    scope: ScopeShape
    due_at: datetime = Field(description="When the worker takes it; `scoring.score.updated` follows.")


class SnapshotSummary(Shape):
    snapshot_id: UUID
    journey_id: UUID
    scope_id: UUID
    version: int
    computed_at: datetime
    health: float | None
    health_low: float | None
    health_high: float | None
    customers: int


class Priority(Shape):
    touchpoint_id: UUID
    priority: float | None = Field(
        description="Σ over its journeys of relevance × the journey's weight; null until they have customers (or "
        "conversion value) to weigh them by."
    )
    low: float | None
    high: float | None
    weight_by: Literal["customers", "value"]
    journeys: list[JourneyRelevance]


class JourneyRelevance(Shape):
    journey_id: UUID
    relevance: float | None
    relevance_low: float | None
    relevance_high: float | None
    weight: float = Field(description="The journey's share of customers (or value) among the touchpoint's journeys.")
    snapshot_id: UUID
