"""The journey map: its public shape (built by one SQL statement, store/maps.py)."""

from __future__ import annotations

from services.journey.models._base import Shape
from services.journey.models.modelling import JourneyPublic, PersonaPublic, StagePublic, StepPublic, TouchpointPublic


class MapStep(StepPublic):
    touchpoint: TouchpointPublic


class MapStage(StagePublic):
    steps: list[MapStep]


class JourneyMap(Shape):
    journey: JourneyPublic
    persona: PersonaPublic | None
    stages: list[MapStage]
