from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Keys, Servers, nats_of_its_own, unique_name
from tests.scoring.factories import Stack
from tests.uvicorn_server import running_service


@pytest.fixture(autouse=True)
def gateway_environment(keys: Keys, gateway_nats: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An in-process gateway (`create_app(GatewaySettings(...))`) verifies the test keys' tokens and,
    when a test starts its lifespan, listens to the package's NATS."""
    monkeypatch.setenv("GATEWAY_AUTH_PUBLIC_KEY", keys.public)
    monkeypatch.setenv("GATEWAY_NATS_URL", gateway_nats)
    monkeypatch.setenv("GATEWAY_RATE_LIMIT", "1000000/minute")


@pytest.fixture
def bearer(keys: Keys) -> dict[str, str]:
    """A caller of workspace `gw` with every scope."""
    return keys.headers("gw", ["admin"])


@pytest.fixture(scope="package")
def gateway_nats() -> Iterator[str]:
    with nats_of_its_own() as url:
        yield url


@pytest.fixture(scope="package")
def processes(
    servers: Servers, gateway_nats: str, keys: Keys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The three services and the gateway as processes of their own, on a NATS of their own, shared by
    the package's end-to-end tests (each test works in a workspace of its own)."""
    own, logs = Servers(servers.database_url_template, gateway_nats), tmp_path_factory.mktemp("gateway-logs")

    def start(factory: str, prefix: str, **env: str) -> Any:
        return running_service(factory, env_prefix=prefix, servers=own, keys=keys, log_dir=logs, extra_env=env)

    with (
        start("services.journey.app:create_app", "JOURNEY_") as journey,
        start("services.feedback.app:create_app", "FEEDBACK_") as feedback,
        start("services.scoring.app:create_app", "SCORING_", SCORING_DEBOUNCE_SECONDS="0.1",
              SCORING_WORKER_POLL_SECONDS="0.2", SCORING_BOOTSTRAP_REPLICATES="50",
              SCORING_REFIT_SECONDS="0") as scoring,
        # No response cache here: these tests compare the gateway's answer with the services' at the
        # moment of reading, and the cache may answer with an earlier read (test_cache.py covers it).
        start("gateway.app:create_app", "GATEWAY_", GATEWAY_JOURNEY_URL=journey, GATEWAY_FEEDBACK_URL=feedback,
              GATEWAY_SCORING_URL=scoring, GATEWAY_LOG_LEVEL="WARNING", GATEWAY_RESPONSE_CACHE_SECONDS="0") as gateway,
    ):  # fmt: skip
        yield {"journey": journey, "feedback": feedback, "scoring": scoring, "gateway": gateway}


@pytest.fixture
async def stack(processes: dict[str, str], keys: Keys) -> AsyncIterator[Stack]:
    workspace = unique_name("gw")
    async with (
        httpx.AsyncClient(base_url=processes["journey"], timeout=30) as journey,
        httpx.AsyncClient(base_url=processes["feedback"], timeout=30) as feedback,
        httpx.AsyncClient(base_url=processes["scoring"], timeout=30) as scoring,
    ):
        yield Stack(journey, feedback, scoring, keys, workspace)
