"""Property-based: every operation of the journey OpenAPI, with generated input, over real HTTP.

No generated request may produce a 5xx, and every response must match the documented schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Keys, Servers
from tests.contracts import schemathesis_failures
from tests.uvicorn_server import running_service


@pytest.fixture(scope="module")
def journey_server(
    servers: Servers, keys: Keys, own_nats: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with running_service(
        "services.journey.app:create_app", env_prefix="JOURNEY_",
        servers=Servers(servers.database_url_template, own_nats), keys=keys,
        log_dir=tmp_path_factory.mktemp("schemathesis"),
    ) as base:  # fmt: skip
        yield base


def test_no_server_errors_and_documented_responses(journey_server: str, keys: Keys) -> None:
    operations, failures = schemathesis_failures(
        journey_server, keys.headers("schemathesis", ["admin"]), max_examples=30
    )
    assert operations >= 20
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
