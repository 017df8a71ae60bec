"""The README's configuration table names every setting, its commands are the Makefile's, its
numbers are the demo's, and its tour runs against the real services, twice."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

from services.common.demo import _activity, load_demo_activity, load_demo_workspace
from services.common.settings import ServiceSettings
from services.feedback.settings import FeedbackSettings
from services.journey.settings import JourneySettings
from tests.conftest import Keys, Servers
from tests.uvicorn_server import running_service

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    names = set(ServiceSettings.model_fields) | set(FeedbackSettings.model_fields) | set(JourneySettings.model_fields)
    missing = sorted(name for name in names if f"`{name.upper()}`" not in readme)
    assert missing == [], f"document these settings in README.md: {missing}"


def test_readme_commands_exist_in_the_makefile_and_ci() -> None:
    targets = set(re.findall(r"^([a-z]+):", (ROOT / "Makefile").read_text(), flags=re.MULTILINE))
    commands = set(re.findall(r"make ([a-z]+)", (ROOT / "README.md").read_text()))
    assert commands <= targets
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make lint" in ci
    assert "make test" in ci


def test_the_tour_counts_the_demos_customers() -> None:
    interactions, _, _ = _activity()
    customers = len({i["customer"] for i in interactions})
    said = re.findall(r"(\d+) customers'\s+interactions", (ROOT / "README.md").read_text())
    assert said == [str(customers)], f"the demo holds {customers} customers; README says {said}"


def _tour() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A five-minute tour", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert block, "the tour's bash block"
    return block.group(1)


def test_the_tour_runs_twice(servers: Servers, own_nats: str, keys: Keys, tmp_path: Path) -> None:
    """Every request of the tour answers as the README says, and a second run too: each POST carries an
    Idempotency-Key, so running it again replays instead of failing with a 409."""
    # A NATS of its own: on the session's, these services' consumers would share the session apps' events.
    own = Servers(servers.database_url_template, own_nats)
    home = tmp_path / "home"  # `journeygraph token` signs with the key of the stack it finds
    home.mkdir()
    (home / "dev-signing-key.pem").write_text(keys.private)
    (home / "dev-signing-key.pub.pem").write_text(keys.public)
    token = keys.token("demo", ["admin"])
    with (
        running_service("services.journey.app:create_app", env_prefix="JOURNEY_", servers=own, keys=keys,
                        log_dir=tmp_path) as journey,
        running_service("services.feedback.app:create_app", env_prefix="FEEDBACK_", servers=own, keys=keys,
                        log_dir=tmp_path) as feedback,
        running_service("services.scoring.app:create_app", env_prefix="SCORING_", servers=own, keys=keys,
                        log_dir=tmp_path) as scoring,
    ):  # fmt: skip
        asyncio.run(load_demo_workspace(journey, token))
        asyncio.run(load_demo_activity(journey, feedback, scoring, token))
        script = (
            _tour()
            .replace("http://127.0.0.1:8001", journey)
            .replace("http://127.0.0.1:8002", feedback)
            .replace("http://127.0.0.1:8003", scoring)
            .replace("uv run journeygraph", f"{sys.executable} -m services.common.cli")
        )
        script = re.sub(r"^export JG_TOKEN=.*$", f"export JG_TOKEN={token}", script, flags=re.MULTILINE)
        # every curl reports its status, method and URL on stderr
        script = "curl() { command curl -w '%{stderr}%{http_code} %{method} %{url_effective}\\n' \"$@\"; }\n" + script
        runs: list[list[tuple[str, str]]] = []
        for _ in range(2):
            env = {"PATH": "/usr/bin:/bin", "JOURNEYGRAPH_HOME": str(home), "COLUMNS": "200"}
            done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, env=env,
                                  cwd=ROOT)  # fmt: skip
            calls = re.findall(r"^(\d{3}) ([A-Z]+) (\S+)$", done.stderr, flags=re.MULTILINE)
            assert calls, done.stderr
            unexpected = [c for c in calls if not (c[0].startswith("2") or (c[1], c[0]) == ("DELETE", "409"))]
            assert unexpected == [], f"run {len(runs) + 1}: {unexpected}"
            assert re.search(r"^eyJ[\w-]+\.[\w-]+\.[\w-]+$", done.stdout, flags=re.MULTILINE), done.stderr
            runs.append([(status, method) for status, method, _ in calls])
        assert ("409", "DELETE") in runs[0]
        assert runs[0] == runs[1]
        assert len(runs[0]) >= 12, runs[0]
