"""`journeygraph token` signs with the running stack's key, from any directory, or refuses and says
where it looked; it never makes a key of its own (the stack would answer "Signature verification
failed")."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from services.common.runtime import load_or_create_keys
from tests.test_runtime import free_ports


def _env(tmp_path: Path, base_port: int, **extra: str) -> dict[str, str]:
    """The user's environment without JOURNEYGRAPH_HOME, with an application folder of the test's own."""
    env = {k: v for k, v in os.environ.items() if k not in ("JOURNEYGRAPH_HOME", "XDG_RUNTIME_DIR")}
    return {**env, "XDG_CONFIG_HOME": str(tmp_path / "config"), "JOURNEYGRAPH_BASE_PORT": str(base_port),
            "COLUMNS": "200", **extra}  # fmt: skip


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "services.common.cli", *args], env=env, cwd=cwd, capture_output=True, text=True,
        check=False,
    )  # fmt: skip


@contextmanager
def _up(home: Path, env: dict[str, str], cwd: Path) -> Iterator[str]:
    """`journeygraph up --no-demo`; yields everything it printed until it was ready."""
    cwd.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.common.cli", "up", "--no-demo", "--home", str(home)],
        env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    output: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if line.startswith("Ctrl-C"):
                break
        assert "is ready" in "".join(output), "".join(output)
        yield "".join(output)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise


class TestFindsTheKey:
    def test_token_from_another_directory_is_accepted_by_the_running_stack(self, tmp_path: Path) -> None:
        base = free_ports(5)
        env = _env(tmp_path, base, JOURNEYGRAPH_NATS_PORT=str(base + 4))
        with _up(tmp_path / "stack", env, cwd=tmp_path / "repo") as printed:
            assert "XDG_RUNTIME_DIR" not in printed  # platformdirs' warning on a session without one
            minted = _cli("token", "--scopes", "journeys:read", env=env, cwd=tmp_path / "elsewhere")
            assert minted.returncode == 0, minted.stderr
            response = httpx.get(
                f"http://127.0.0.1:{base + 1}/v1/journeys", headers={"Authorization": f"Bearer {minted.stdout.strip()}"}
            )
            assert response.status_code == 200, response.text
        assert not (tmp_path / "elsewhere" / ".journeygraph").exists(), "token made a key of its own"
        # stopped: the record is gone, and nothing is found any more from elsewhere
        assert list((tmp_path / "config").rglob("*.json")) == []
        assert _cli("token", env=env, cwd=tmp_path / "elsewhere").returncode != 0

    def test_without_a_key_it_refuses_and_names_where_it_looked(self, tmp_path: Path) -> None:
        cwd = tmp_path / "somewhere"
        out = _cli("token", env=_env(tmp_path, free_ports(1)), cwd=cwd)
        assert out.returncode == 2
        message = " ".join(out.stderr.replace("│", " ").split())
        assert "no dev signing key" in message
        assert str(cwd / ".journeygraph") in message
        assert "journeygraph up" in message
        assert not (cwd / ".journeygraph").exists(), "token made a key of its own"

    def test_an_explicit_home_without_a_key_is_refused(self, tmp_path: Path) -> None:
        out = _cli("token", "--home", str(tmp_path / "empty"), env=_env(tmp_path, free_ports(1)), cwd=tmp_path)
        assert out.returncode == 2
        assert "no dev signing key" in out.stderr
        assert not (tmp_path / "empty").exists()


class TestOptions:
    def test_help_names_the_default_scopes(self, tmp_path: Path) -> None:
        out = _cli("token", "--help", env=_env(tmp_path, 8000), cwd=tmp_path)
        scopes = next(line for line in out.stdout.splitlines() if "--scopes" in line)
        following = out.stdout.splitlines()[out.stdout.splitlines().index(scopes) + 1]
        assert re.search(r"default: \(?admin", scopes + following), out.stdout

    @pytest.mark.parametrize("hours", ["0", "-3"])
    def test_a_token_already_expired_is_refused(self, tmp_path: Path, hours: str) -> None:
        load_or_create_keys(tmp_path)
        out = _cli("token", "--hours", hours, "--home", str(tmp_path), env=_env(tmp_path, 8000), cwd=tmp_path)
        assert out.returncode == 2
        assert "--hours" in out.stderr
        assert out.stdout == ""
