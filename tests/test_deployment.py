"""docker-compose.yml (validated offline against the compose specification: no engine here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.common.settings import ServiceSettings
from services.feedback.settings import FeedbackSettings
from services.journey.settings import JourneySettings

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


@pytest.mark.parametrize(("prefix", "settings"), [("JOURNEY", JourneySettings), ("FEEDBACK", FeedbackSettings)])
def test_every_service_variable_is_a_setting(prefix: str, settings: type[ServiceSettings]) -> None:
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
