"""The journey map: its public shape and the cache of its JSON document."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
import sqlmodel

from services.journey.models._base import JourneyTable, Shape, now_column
from services.journey.models.modelling import JourneyPublic, PersonaPublic, StagePublic, StepPublic, TouchpointPublic


class MapStep(StepPublic):
    touchpoint: TouchpointPublic


class MapStage(StagePublic):
    steps: list[MapStep]


class JourneyMap(Shape):
    journey: JourneyPublic
    persona: PersonaPublic | None
    stages: list[MapStage]


class JourneyMapCache(JourneyTable, table=True):
    """The last map document built for a journey, valid while `version` equals the journey's
    `map_version` (bumped by triggers) and `format` equals the code's document format."""

    __tablename__ = "journey_map_cache"
    journey_id: UUID = sqlmodel.Field(primary_key=True, foreign_key="journey.id", ondelete="CASCADE")
    workspace_id: str
    version: int = sqlmodel.Field(sa_type=sa.BigInteger)
    format: int
    doc: str = sqlmodel.Field(sa_type=sa.Text)
    built_at: datetime = sqlmodel.Field(sa_column=now_column())
