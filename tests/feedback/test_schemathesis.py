"""Property-based: every operation of the feedback OpenAPI, with generated input, over real HTTP.

No generated request may produce a 5xx, and every response must match the documented schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import Keys, Servers

WORKSPACE = "schemathesis"


@pytest.fixture(scope="module")
def feedback_server(servers: Servers, keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.uvicorn_server import running_service

    with running_service(
        "services.feedback.app:create_app",
        env_prefix="FEEDBACK_",
        servers=servers,
        keys=keys,
        log_dir=tmp_path_factory.mktemp("schemathesis"),
    ) as base:
        yield base


def test_no_server_errors_and_documented_responses(feedback_server: str, keys: Keys) -> None:
    # Same approach as tests/journey/test_schemathesis.py (schemathesis' pytest loader breaks on pytest 9).
    schema = schemathesis.openapi.from_url(f"{feedback_server}/openapi.json")
    headers = keys.headers(WORKSPACE, ["admin"])
    failures: dict[str, str] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid schema raises here
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
            case.call_and_validate(
                headers=headers,
                checks=[
                    not_a_server_error,
                    status_code_conformance,
                    content_type_conformance,
                    response_schema_conformance,
                ],
            )

        try:
            check()
        except Exception as exc:
            failures[operation.label] = str(exc)[:2000]
    assert operations >= 25
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
