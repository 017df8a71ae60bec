"""Events the journey service publishes (subject -> payload), past tense.

Each event carries the full public state after the change, so a consumer can build its read model
from the stream alone, replaying from the start. The envelope names the aggregate and its version
after the change: a persona, a touchpoint or a journey (whose stages and steps are part of it: a
`journey.stage.*` or `journey.step.*` event carries the journey's id and version). A deletion's
version is the aggregate's last + 1. Customers, interactions and outcomes travel in batch events
(`data.items`, split by size), each item with its `id` and, for customers, its `version`; the
free-form `properties` and `profile` of an item are at most 16 KiB.
"""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel

from services.journey.models import (
    CustomersReassigned,
    CustomersUpserted,
    InteractionsRecorded,
    JourneyPublic,
    OutcomesRecorded,
    PersonaPublic,
    StagePublic,
    StepPublic,
    TouchpointPublic,
)

# Batch events of customers: each item a customer's public state with its version.
CUSTOMER_UPSERTED = "journey.customer.upserted"
CUSTOMER_REASSIGNED = "journey.customer.reassigned"


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
    CUSTOMER_UPSERTED: CustomersUpserted,
    CUSTOMER_REASSIGNED: CustomersReassigned,
    "journey.interaction.recorded": InteractionsRecorded,
    "journey.outcome.recorded": OutcomesRecorded,
}
