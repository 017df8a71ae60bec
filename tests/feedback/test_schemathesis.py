"""Property-based: every operation of the feedback OpenAPI, with generated input, over real HTTP.

No generated request may produce a 5xx, and every response must match the documented schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Keys, Servers
from tests.contracts import schemathesis_failures
from tests.uvicorn_server import running_service


@pytest.fixture(scope="module")
def feedback_server(
    servers: Servers, keys: Keys, own_nats: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with running_service(
        "services.feedback.app:create_app",
        env_prefix="FEEDBACK_",
        servers=servers,
        keys=keys,
        log_dir=tmp_path_factory.mktemp("schemathesis"),
        extra_env={"FEEDBACK_NATS_URL": own_nats},  # its consumers must not take the session app's events
    ) as base:
        yield base


def test_no_server_errors_and_documented_responses(feedback_server: str, keys: Keys) -> None:
    operations, failures = schemathesis_failures(
        feedback_server, keys.headers("schemathesis", ["admin"]), max_examples=25
    )
    assert operations >= 25
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
