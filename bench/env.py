"""What every benchmark needs: real PostgreSQL and NATS (embedded, or JG_BENCH_DATABASE_URL /
JG_BENCH_NATS_URL), a signing key, and services run by uvicorn in their own process, reached over
real HTTP, as in production."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import httpx

from services.common.auth import generate_signing_key, mint_token
from services.common.db import ensure_database
from services.common.embedded import free_port, start_nats, start_postgres, stop_process


@dataclass
class BenchEnv:
    root: Path
    database_url_template: str
    nats_url: str
    private_key: str
    public_key: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    nats: subprocess.Popen[bytes] | None = None  # the embedded server, when JG_BENCH_NATS_URL is not set

    @classmethod
    @asynccontextmanager
    async def start(cls) -> AsyncIterator[BenchEnv]:
        with tempfile.TemporaryDirectory(prefix="jg-bench-") as tmp:
            root = Path(tmp)
            pg = None
            db = os.environ.get("JG_BENCH_DATABASE_URL")
            if not db:
                pg, db = start_postgres(root / "pg")
            private, public = generate_signing_key()
            env = cls(root, db, os.environ.get("JG_BENCH_NATS_URL", ""), private, public)
            try:
                yield env
            finally:
                env.stop_services()
                if env.nats is not None:
                    stop_process(env.nats)
                if pg:
                    pg.cleanup()

    def next_bench(self) -> None:
        """Stop the last benchmark's services (their consumers may still work through a backlog) and,
        unless JG_BENCH_NATS_URL names a server, give the next one a NATS server of its own: on the
        last one's, its services' durable consumers would go on where those left off, with events of
        another database."""
        self.stop_services()
        if os.environ.get("JG_BENCH_NATS_URL"):
            return
        if self.nats is not None:
            stop_process(self.nats)
        port = free_port()
        self.nats = start_nats(self.root / f"nats-{port}", port)
        self.nats_url = f"nats://127.0.0.1:{port}"

    def stop_services(self) -> None:
        for proc in self.procs:
            stop_process(proc)
        self.procs.clear()

    def database_url(self, db: str) -> str:
        return self.database_url_template.format(db=db)

    def token(self, workspace: str, scopes: list[str]) -> str:
        return mint_token(self.private_key, workspace=workspace, scopes=scopes)

    async def serve(self, app: str, *, env_prefix: str, database: str, extra_env: dict[str, str] | None = None) -> str:
        """Run a service factory under uvicorn (one worker) and return its base URL once ready."""
        url = self.database_url(database)
        await ensure_database(url)
        port = free_port()
        env = {
            **os.environ,
            f"{env_prefix}DATABASE_URL": url,
            f"{env_prefix}NATS_URL": self.nats_url,
            f"{env_prefix}AUTH_PUBLIC_KEY": self.public_key,
            f"{env_prefix}RATE_LIMIT": "1000000/minute",
            f"{env_prefix}LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        log = open(self.root / f"{database}.log", "ab")  # noqa: SIM115, ASYNC230 - once, at set-up
        proc = subprocess.Popen(  # noqa: ASYNC220 - once, at set-up
            [
                sys.executable,
                "-m",
                "services.common.serve",
                "--factory",
                app,
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=log,
            stderr=log,
        )
        self.procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as client:
            while True:
                try:
                    if (await client.get(f"{base}/readyz")).status_code == 200:
                        return base
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{app} did not start; see {self.root / (database + '.log')}")
                await asyncio.sleep(0.1)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def wrk_load(
    url: str, headers: dict[str, str], *, script: Path, connections: int, seconds: int, env: dict[str, str]
) -> dict[str, float]:
    """Load `url` from wrk (a C load generator: a Python client saturates a core long before a
    minimal endpoint does, and would make both sides look alike) with the Lua `script` over one
    thread and `connections` for `seconds`. Returns req/s, p50 and p99 in ms; fails on any
    non-2xx answer or socket error."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    for name, value in headers.items():
        args[1:1] = ["-H", f"{name}: {value}"]
    out = subprocess.run(args, env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"{url}: failed requests under load:\n{out}")
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def latency(p: str) -> float:
        value = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert value, out
        return float(value[1]) * unit[value[2]]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rps, out
    return {"rps": float(rps[1]), "p50": latency("50"), "p99": latency("99")}


def summary(values_ms: list[float]) -> dict[str, Any]:
    return {"p50": median(values_ms), "p99": percentile(values_ms, 99), "n": len(values_ms)}


async def until(check: Callable[[], Awaitable[Any]], *, every: float = 0.1, within: float = 600.0) -> float:
    """Poll `check` until it returns something truthy; the seconds it took."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > within:
            raise TimeoutError(f"not reached within {within:.0f} s")
        await asyncio.sleep(every)
    return time.monotonic() - started


async def caught_up(client: httpx.AsyncClient) -> float:
    """Seconds until every consumer of the service behind `client` (an admin's) has applied every
    event so far: derived data is built in the background, and a benchmark should not time one
    phase against the backlog of the one before."""

    async def applied() -> bool:
        return all(c["pending_events"] == 0 for c in (await client.get("/v1/admin/consumers")).json()["items"])

    return await until(applied)


def bounded_post(client: httpx.AsyncClient, concurrency: int = 8) -> Callable[[str, dict[str, Any]], Awaitable[Any]]:
    """POST JSON with at most `concurrency` requests in flight; the answer's JSON (raises on an error)."""
    sem = asyncio.Semaphore(concurrency)

    async def post(url: str, body: dict[str, Any]) -> Any:
        async with sem:
            response = await client.post(url, json=body)
            response.raise_for_status()
            return response.json()

    return post
