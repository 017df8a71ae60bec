from __future__ import annotations

import pytest

from tests.conftest import Keys


@pytest.fixture(autouse=True)
def gateway_environment(keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    """An in-process gateway (`create_app(GatewaySettings(...))`) verifies the test keys' tokens; no
    test here opens its NATS unless it starts the app's lifespan."""
    monkeypatch.setenv("GATEWAY_AUTH_PUBLIC_KEY", keys.public)
    monkeypatch.setenv("GATEWAY_NATS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("GATEWAY_RATE_LIMIT", "1000000/minute")


@pytest.fixture
def bearer(keys: Keys) -> dict[str, str]:
    """A caller of workspace `gw` with every scope."""
    return keys.headers("gw", ["admin"])
