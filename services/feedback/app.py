"""The feedback service: surveys, responses, NPS/CSAT/CES metrics, comments, cases and webhooks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from fastapi import FastAPI

from services.common.service import create_service_app
from services.common.worker import Worker
from services.feedback.api import router
from services.feedback.comments import CommentAnalyser
from services.feedback.consumers import CONSUMERS
from services.feedback.delivery import DeliveryWorker
from services.feedback.events import PUBLISHED
from services.feedback.settings import FeedbackSettings

SERVICE_DIR = Path(__file__).parent

TAGS = [
    {
        "name": "surveys",
        "description": "Feedback instruments with typed questions; edits of answered surveys are versioned.",
    },
    {"name": "responses", "description": "Customers' answers: single, bulk (10,000 per call) and CSV/NDJSON import."},
    {
        "name": "metrics",
        "description": "NPS, CSAT and CES with n and 95 % intervals; grouping and period comparison. Answers "
        "come from a projection of the response events and say up to when they are complete (`as_of`).",
    },
    {"name": "comments", "description": "Sentiment and themes of comments (German and English), summarised."},
    {
        "name": "closed loop",
        "description": "Rules, and the follow-up cases they open shortly after a response or its comment "
        "analysis (a projection of the events), or that people open by hand.",
    },
    {
        "name": "webhooks",
        "description": "Signed deliveries of this service's events (Standard Webhooks; the `webhook-id` is the "
        "event's id) with retries and a log.",
    },
    {"name": "eligibility", "description": "Survey fatigue: may this customer be surveyed now?"},
    {"name": "settings", "description": "The workspace's feedback configuration."},
]


def create_app(settings: FeedbackSettings | None = None) -> FastAPI:
    settings = settings or FeedbackSettings()
    return create_service_app(
        title="journeygraph feedback service",
        description="Collects feedback (NPS, CSAT, CES, comments) per touchpoint, measures it and closes the loop.",
        settings=settings,
        service_dir=SERVICE_DIR,
        routers=[router],
        published_events=PUBLISHED,
        openapi_tags=TAGS,
        consumers=CONSUMERS,
        setup_workers=_workers(settings),
    )


def _workers(settings: FeedbackSettings) -> Callable[[FastAPI], Sequence[Worker]]:
    def setup(app: FastAPI) -> Sequence[Worker]:
        worker = DeliveryWorker(app.state.engine, settings)
        analyser = CommentAnalyser(app.state.sessionmaker, settings)
        app.state.delivery_worker, app.state.comment_analyser = worker, analyser
        return (worker, analyser)

    return setup
