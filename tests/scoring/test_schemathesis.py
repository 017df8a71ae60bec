"""Property-based: every operation of the scoring OpenAPI, with generated input, over real HTTP.

Every schemathesis check, positive and negative input, every phase: no 5xx, no undocumented status,
no response outside its schema, no accepted invalid input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Keys, Servers
from tests.contracts import schemathesis_run
from tests.uvicorn_server import running_service

MAX_EXAMPLES = 10  # per operation and phase: the whole run stays near a minute per service


@pytest.fixture(scope="module")
def scoring_server(
    servers: Servers, keys: Keys, own_nats: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with running_service(
        "services.scoring.app:create_app", env_prefix="SCORING_",
        servers=Servers(servers.database_url_template, own_nats), keys=keys,
        log_dir=tmp_path_factory.mktemp("schemathesis"),
    ) as base:  # fmt: skip
        yield base


def test_every_check_every_phase(scoring_server: str, keys: Keys, tmp_path: Path) -> None:
    code, output = schemathesis_run(
        scoring_server, keys.token("schemathesis", ["admin"]), max_examples=MAX_EXAMPLES, report_dir=tmp_path
    )
    assert code == 0, output[-20000:]
