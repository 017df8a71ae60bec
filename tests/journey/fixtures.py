"""Journey service fixtures, registered as a plugin so kit tests can use the journey app as their carrier."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from services.common.db import ensure_database
from services.journey.app import create_app
from services.journey.settings import JourneySettings
from tests.conftest import Keys, Servers, unique_name
from tests.journey.factories import JourneyApi


@pytest.fixture(scope="session")
async def journey_settings(servers: Servers, keys: Keys) -> JourneySettings:
    url = servers.database_url(unique_name("jg_journey"))
    await ensure_database(url)
    return JourneySettings(
        database_url=url,
        nats_url=servers.nats_url,
        auth_public_key=keys.public,
        rate_limit="100000/minute",
        outbox_poll_seconds=0.2,
        worker_poll_seconds=0.2,
        log_json=False,
        log_level="WARNING",
    )


@pytest.fixture(scope="session")
async def journey_app(journey_settings: JourneySettings) -> AsyncIterator[FastAPI]:
    app = create_app(journey_settings)
    async with LifespanManager(app, startup_timeout=60):
        yield app


@pytest.fixture(scope="session")
async def journey_http(journey_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=journey_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://journey") as client:
        yield client


@pytest.fixture
def api(journey_http: httpx.AsyncClient, keys: Keys, workspace: str) -> JourneyApi:
    return JourneyApi(journey_http, keys, workspace)
