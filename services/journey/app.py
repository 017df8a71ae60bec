"""The journey service: the journey model (personas, journeys, stages, touchpoints, steps) and what
real customers do on it (customers, interactions, outcomes, DNA, funnels, paths, reach)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.common.service import create_service_app
from services.journey.api import router
from services.journey.consumers import CONSUMERS, setup_workers
from services.journey.events import PUBLISHED
from services.journey.settings import JourneySettings

SERVICE_DIR = Path(__file__).parent

TAGS = [
    {"name": "personas", "description": "Customer archetypes segmented by needs and goals, with assignment rules."},
    {"name": "touchpoints", "description": "The workspace's catalogue of points of contact."},
    {"name": "journeys", "description": "Journeys of personas, managed like products; `/map` returns a whole map."},
    {"name": "stages", "description": "Ordered phases of a journey (default Need → Buy → Use)."},
    {"name": "steps", "description": "Touchpoints placed in a stage, with moment-of-truth flag and emotion."},
    {"name": "customers", "description": "Real customers by the CRM's external id: profile, consent, persona, DNA."},
    {"name": "interactions", "description": "Customer X met touchpoint Y on channel Z at time T: one, bulk, NDJSON."},
    {"name": "outcomes", "description": "Purchases, conversions, churn and workspace-defined outcomes."},
    {
        "name": "analytics",
        "description": "Funnels, paths (Sankey) and reach per journey, from projections built from the events "
        "(`as_of` says up to when an answer is complete).",
    },
]


def create_app(settings: JourneySettings | None = None) -> FastAPI:
    settings = settings or JourneySettings()
    return create_service_app(
        title="journeygraph journey service",
        description="Models customer journeys and records what real customers do on them.",
        settings=settings,
        service_dir=SERVICE_DIR,
        routers=[router],
        published_events=PUBLISHED,
        openapi_tags=TAGS,
        consumers=CONSUMERS,
        setup_workers=setup_workers,
    )
