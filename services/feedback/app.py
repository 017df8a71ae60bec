"""The feedback service: surveys, responses, NPS/CSAT/CES metrics, comments, cases and webhooks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from fastapi import FastAPI

from services.common.service import create_service_app
from services.common.worker import Worker
from services.feedback.api import router
from services.feedback.comments import CommentAnalyser
from services.feedback.delivery import DeliveryWorker
from services.feedback.events import PUBLISHED
from services.feedback.rollups import RollupCompactor
from services.feedback.settings import FeedbackSettings
from services.feedback.store.submit import SubmitCache

SERVICE_DIR = Path(__file__).parent

TAGS = [
    {
        "name": "surveys",
        "description": "Feedback instruments with typed questions; edits of answered surveys are versioned.",
    },
    {"name": "responses", "description": "Customers' answers: single, bulk (10,000 per call) and CSV/NDJSON import."},
    {"name": "metrics", "description": "NPS, CSAT and CES with n and 95 % intervals; grouping and period comparison."},
    {"name": "comments", "description": "Sentiment and themes of comments (German and English), summarised."},
    {"name": "closed loop", "description": "Rules that open follow-up cases, and the cases."},
    {"name": "webhooks", "description": "Signed event deliveries (Standard Webhooks) with retries and a log."},
    {"name": "eligibility", "description": "Survey fatigue: may this customer be surveyed now?"},
    {"name": "settings", "description": "The workspace's feedback configuration."},
]


def create_app(settings: FeedbackSettings | None = None) -> FastAPI:
    settings = settings or FeedbackSettings()
    app = create_service_app(
        title="journeygraph feedback service",
        description="Collects feedback (NPS, CSAT, CES, comments) per touchpoint, measures it and closes the loop.",
        settings=settings,
        service_dir=SERVICE_DIR,
        routers=[router],
        published_events=PUBLISHED,
        openapi_tags=TAGS,
        setup_workers=_workers(settings),
    )
    app.state.submit_cache = SubmitCache()
    return app


def _workers(settings: FeedbackSettings) -> Callable[[FastAPI], Sequence[Worker]]:
    def setup(app: FastAPI) -> Sequence[Worker]:
        worker = DeliveryWorker(app.state.engine, settings)
        analyser = CommentAnalyser(app.state.sessionmaker, settings)
        compactor = RollupCompactor(app.state.engine, every_seconds=settings.rollup_compact_seconds)
        app.state.delivery_worker, app.state.comment_analyser = worker, analyser
        return (worker, analyser, compactor)

    return setup
