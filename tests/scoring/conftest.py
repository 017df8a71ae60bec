"""The scoring service on the session's PostgreSQL and NATS, beside the session's journey and feedback
apps (their plugins): the scores are built from those services' real events."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from services.common.db import ensure_database
from services.scoring.app import create_app
from services.scoring.settings import ScoringSettings
from tests.conftest import Keys, Servers, unique_name
from tests.scoring.factories import Stack


def make_settings(servers: Servers, keys: Keys, database: str, **overrides: object) -> ScoringSettings:
    values: dict[str, object] = {
        "database_url": servers.database_url(database),
        "nats_url": servers.nats_url,
        "auth_public_key": keys.public,
        "rate_limit": "100000/minute",
        "outbox_poll_seconds": 0.2,
        "worker_poll_seconds": 0.2,
        "debounce_seconds": 0.1,
        # Every change refits, so a test reads its events' effects in the next snapshot; the refresh
        # from the tallies between fits is tested on its own (test_refresh.py).
        "refit_seconds": 0,
        "bootstrap_replicates": 50,
        "log_json": False,
        "log_level": "WARNING",
        **overrides,
    }
    return ScoringSettings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
async def scoring_settings(servers: Servers, keys: Keys) -> ScoringSettings:
    name = unique_name("jg_scoring")
    await ensure_database(servers.database_url(name))
    return make_settings(servers, keys, name)


@pytest.fixture(scope="session")
async def scoring_app(scoring_settings: ScoringSettings) -> AsyncIterator[FastAPI]:
    app = create_app(scoring_settings)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60):
        yield app


@pytest.fixture(scope="session")
async def scoring_http(scoring_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=scoring_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://scoring") as client:
        yield client


@pytest.fixture
def stack(
    journey_http: httpx.AsyncClient,
    feedback_http: httpx.AsyncClient,
    scoring_http: httpx.AsyncClient,
    keys: Keys,
    workspace: str,
) -> Stack:
    return Stack(journey_http, feedback_http, scoring_http, keys, workspace)
