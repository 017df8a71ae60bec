"""Feedback service fixtures, registered as a plugin (tests/conftest.py) so that other packages (the
scoring tests) use the same session app: a second app would split the durable consumers' events."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from services.common.db import ensure_database
from services.feedback.app import create_app
from services.feedback.settings import FeedbackSettings
from tests.conftest import Keys, Servers, unique_name


def make_settings(servers: Servers, keys: Keys, database: str, **overrides: object) -> FeedbackSettings:
    values: dict[str, object] = {
        "database_url": servers.database_url(database),
        "nats_url": servers.nats_url,
        "auth_public_key": keys.public,
        "rate_limit": "100000/minute",
        "outbox_poll_seconds": 0.2,
        "worker_poll_seconds": 0.1,
        "webhook_backoff_base_seconds": 0.2,
        "webhook_timeout_seconds": 2.0,
        "log_json": False,
        "log_level": "WARNING",
        **overrides,
    }
    return FeedbackSettings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
async def feedback_settings(servers: Servers, keys: Keys) -> FeedbackSettings:
    name = unique_name("jg_feedback")
    await ensure_database(servers.database_url(name))
    return make_settings(servers, keys, name)


@pytest.fixture(scope="session")
async def feedback_app(feedback_settings: FeedbackSettings) -> AsyncIterator[FastAPI]:
    app = create_app(feedback_settings)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60):
        yield app


@pytest.fixture(scope="session")
async def feedback_http(feedback_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=feedback_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://feedback") as client:
        yield client
