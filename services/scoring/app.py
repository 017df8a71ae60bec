"""The scoring service: a read model of the journey and feedback events, and the scores built on it —
which few touchpoints decide the outcome, which ones burn budget, how healthy each journey is."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from fastapi import FastAPI

from services.common.service import create_service_app
from services.common.worker import Worker
from services.scoring.api import router
from services.scoring.events import PUBLISHED
from services.scoring.readmodel import CONSUMERS, DEBOUNCE_KEY, RECOMPUTE_WORKER, REFIT_KEY
from services.scoring.recompute import FIT, REFRESH, RecomputeWorker
from services.scoring.settings import ScoringSettings

SERVICE_DIR = Path(__file__).parent

TAGS = [
    {
        "name": "scores",
        "description": "Per journey: relevance and reach of every touchpoint, portfolio, moments of truth, pain "
        "points, health and attribution, each with n, interval and method; snapshots kept as history. Scores "
        "follow the journey and feedback events within seconds (`as_of` says up to when they are complete).",
    },
    {"name": "priority", "description": "A touchpoint's relevance across every journey it serves."},
    {"name": "settings", "description": "How the workspace scores: relevance basis, health weights, thresholds."},
]


def create_app(settings: ScoringSettings | None = None) -> FastAPI:
    settings = settings or ScoringSettings()
    return create_service_app(
        title="journeygraph scoring service",
        description="Scores every touchpoint of every journey by relevance and reach, from the events alone.",
        settings=settings,
        service_dir=SERVICE_DIR,
        routers=[router],
        published_events=PUBLISHED,
        openapi_tags=TAGS,
        consumers=CONSUMERS,
        setup_workers=_workers(settings),
    )


def _workers(settings: ScoringSettings) -> Callable[[FastAPI], Sequence[Worker]]:
    def setup(app: FastAPI) -> Sequence[Worker]:
        lanes = [RecomputeWorker(app.state.sessionmaker, settings, lane) for lane in (REFRESH, FIT)]

        def wake() -> None:
            for lane in lanes:
                lane.wake()

        # The consumers' sessions come from this sessionmaker: their commits wake the worker.
        info = app.state.sessionmaker.kw.setdefault("info", {})
        info.update(
            {
                RECOMPUTE_WORKER: wake,
                DEBOUNCE_KEY: settings.debounce_seconds,
                REFIT_KEY: settings.refit_seconds,
            }
        )
        return lanes

    return setup
