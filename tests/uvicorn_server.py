"""A service run by uvicorn in its own process, reached over real HTTP (schemathesis, runtime)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from services.common.db import ensure_database
from services.common.embedded import free_port, stop_process
from tests.conftest import Keys, Servers, unique_name


@contextmanager
def running_service(
    factory: str,
    *,
    env_prefix: str,
    servers: Servers,
    keys: Keys,
    log_dir: Path,
    extra_env: dict[str, str] | None = None,
) -> Iterator[str]:
    """Start `factory` (e.g. services.journey.app:create_app) on a fresh database; yield its base URL."""
    url = servers.database_url(unique_name(f"jg_{env_prefix.lower().rstrip('_')}"))
    asyncio.run(ensure_database(url))
    port = free_port()
    env = {
        **os.environ,
        f"{env_prefix}DATABASE_URL": url,
        f"{env_prefix}NATS_URL": servers.nats_url,
        f"{env_prefix}AUTH_PUBLIC_KEY": keys.public,
        f"{env_prefix}RATE_LIMIT": "1000000/minute",
        f"{env_prefix}LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    log_path = log_dir / f"{env_prefix.lower()}uvicorn.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.common.serve", "--factory", factory, "--port", str(port),
             "--no-access-log"],
            env=env, stdout=log, stderr=log,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{factory} did not become ready: {log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield base
    finally:
        stop_process(proc)
