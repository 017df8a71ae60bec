"""Events the journey service publishes (subject -> payload), past tense.

Each event carries the full public state after the change, so a consumer can build its read model
from the stream alone, replaying from the start.
"""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel

from services.journey.models import (
    CustomersUpserted,
    InteractionsRecorded,
    JourneyPublic,
    OutcomesRecorded,
    PersonaPublic,
    StagePublic,
    StepPublic,
    TouchpointPublic,
)


class Deleted(BaseModel):
    id: UUID
    key: str


class JourneyCreated(BaseModel):
    journey: JourneyPublic
    stages: list[StagePublic]


class StagesChanged(BaseModel):
    journey_id: UUID
    stage: StagePublic
    stages: list[StagePublic]  # the journey's stages in their order after the change


PUBLISHED: dict[str, type[BaseModel]] = {
    "journey.persona.created": PersonaPublic,
    "journey.persona.updated": PersonaPublic,
    "journey.persona.deleted": Deleted,
    "journey.touchpoint.created": TouchpointPublic,
    "journey.touchpoint.updated": TouchpointPublic,
    "journey.touchpoint.deleted": Deleted,
    "journey.journey.created": JourneyCreated,
    "journey.journey.updated": JourneyPublic,
    "journey.journey.deleted": Deleted,
    "journey.stage.added": StagesChanged,
    "journey.stage.updated": StagesChanged,
    "journey.stage.removed": StagesChanged,
    "journey.step.added": StepPublic,
    "journey.step.updated": StepPublic,
    "journey.step.removed": StepPublic,
    "journey.customer.upserted": CustomersUpserted,
    "journey.interaction.recorded": InteractionsRecorded,
    "journey.outcome.recorded": OutcomesRecorded,
}
