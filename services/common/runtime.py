"""The embedded runtime behind `make run`: real PostgreSQL and NATS from pip packages, every
service as its own process on a fixed port, ready within seconds. A process that dies is started
again with backoff; only Ctrl-C (SIGINT/SIGTERM) stops everything."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from services.common.auth import generate_signing_key, mint_token
from services.common.db import ensure_database
from services.common.embedded import start_nats, start_postgres, stop_process


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    app: str  # uvicorn factory path; started by path so this module imports no service
    port: int
    env_prefix: str


# Fixed ports (gateway 8000, journey 8001, feedback 8002, scoring 8003); JOURNEYGRAPH_BASE_PORT
# moves them all, e.g. to run a second copy beside the first.
BASE_PORT = int(os.environ.get("JOURNEYGRAPH_BASE_PORT", "8000"))
SERVICES = [
    ServiceSpec("journey", "services.journey.app:create_app", BASE_PORT + 1, "JOURNEY_"),
    ServiceSpec("feedback", "services.feedback.app:create_app", BASE_PORT + 2, "FEEDBACK_"),
    ServiceSpec("scoring", "services.scoring.app:create_app", BASE_PORT + 3, "SCORING_"),
]
# The gateway owns no data (no database, no events): it needs the services' URLs only.
GATEWAY = ServiceSpec("gateway", "gateway.app:create_app", BASE_PORT, "GATEWAY_")
NATS_PORT = int(os.environ.get("JOURNEYGRAPH_NATS_PORT", "4322"))  # not 4222: a machine may run its own


def home_dir() -> Path:
    return Path(os.environ.get("JOURNEYGRAPH_HOME", ".journeygraph")).resolve()


def signing_key_path(home: Path) -> Path:
    return home / "dev-signing-key.pem"


def load_or_create_keys(home: Path) -> tuple[str, str]:
    """The dev signing key pair of this data folder (created on first use, kept across runs)."""
    private_path, public_path = signing_key_path(home), home / "dev-signing-key.pub.pem"
    if not private_path.exists():
        home.mkdir(parents=True, exist_ok=True)
        private, public = generate_signing_key()
        private_path.write_text(private)
        private_path.chmod(0o600)
        public_path.write_text(public)
    return private_path.read_text(), public_path.read_text()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@dataclass
class Supervisor:
    """Restarts a process that exited, after 1, 2, 4 ... up to 30 s (the count starts again once it
    ran for a minute), and says so: one crashed service does not stop the others, PostgreSQL or NATS."""

    procs: list[tuple[str, subprocess.Popen[bytes]]]
    restart: Callable[[str], subprocess.Popen[bytes]]
    logs: Path
    failures: dict[str, int] = field(default_factory=dict)
    due: dict[str, float] = field(default_factory=dict)  # name -> when to start it again
    started: dict[str, float] = field(default_factory=dict)

    def check(self) -> None:
        now = time.monotonic()
        for i, (name, proc) in enumerate(self.procs):
            if proc.poll() is None:
                if now - self.started.get(name, 0.0) > 60:
                    self.failures.pop(name, None)
                continue
            if name not in self.due:
                n = self.failures[name] = self.failures.get(name, 0) + 1
                delay = min(30.0, 2.0 ** (n - 1))
                self.due[name] = now + delay
                print(
                    f"journeygraph: {name} exited with code {proc.returncode}; restarting in {delay:g} s "
                    f"(restart {n}); see {self.logs}/{name}.log",
                    flush=True,
                )
            elif now >= self.due[name]:
                del self.due[name]
                try:
                    self.procs[i] = (name, self.restart(name))
                except Exception as exc:  # e.g. its port still taken: try again later
                    print(f"journeygraph: {name} did not start again: {exc}", flush=True)
                    continue
                self.started[name] = now
                print(f"journeygraph: {name} restarted", flush=True)


class Runtime:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.logs = home / "logs"
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def run(self, *, load_demo: bool) -> None:
        started = time.monotonic()
        self.logs.mkdir(parents=True, exist_ok=True)
        busy = [p for p in [NATS_PORT, GATEWAY.port, *(s.port for s in SERVICES)] if not _port_free(p)]
        if busy:
            sys.exit(f"port(s) {', '.join(map(str, busy))} already in use: is `journeygraph up` running already?")
        private, public = load_or_create_keys(self.home)
        print(f"journeygraph: data in {self.home}")
        pg, url_template = start_postgres(self.home / "pg")
        stopping = False

        def stop(*_: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            nats_url = f"nats://127.0.0.1:{NATS_PORT}"
            restarts: dict[str, Callable[[], subprocess.Popen[bytes]]] = {
                "nats": lambda: start_nats(self.home / "nats", NATS_PORT, log_file=self.logs / "nats.log")
            }
            for spec in SERVICES:
                url = url_template.format(db=f"journeygraph_{spec.name}")
                asyncio.run(ensure_database(url))
                env = {"DATABASE_URL": url, "NATS_URL": nats_url, "AUTH_PUBLIC_KEY": public}
                restarts[spec.name] = functools.partial(self._start_service, spec, env)
            services = {f"{s.name.upper()}_URL": f"http://127.0.0.1:{s.port}" for s in SERVICES}
            services |= {"NATS_URL": nats_url, "AUTH_PUBLIC_KEY": public}
            restarts[GATEWAY.name] = functools.partial(self._start_service, GATEWAY, services)
            for name, start in restarts.items():
                self.procs.append((name, start()))
            self._wait_ready(deadline=time.monotonic() + 90)
            token = mint_token(private, workspace="demo", scopes=["admin"], subject="newcomer")
            if load_demo:
                from services.common.demo import load_demo_activity, load_demo_workspace

                urls = {s.name: f"http://127.0.0.1:{s.port}" for s in SERVICES}
                asyncio.run(load_demo_workspace(urls["journey"], token))
                asyncio.run(load_demo_activity(urls["journey"], urls["feedback"], urls["scoring"], token))
            self._print_welcome(token, time.monotonic() - started)
            supervisor = Supervisor(self.procs, restart=lambda name: restarts[name](), logs=self.logs)
            while not stopping:
                supervisor.check()
                time.sleep(0.5)
        finally:
            print("journeygraph: stopping ...")
            for _, proc in reversed(self.procs):
                stop_process(proc)
            pg.cleanup()
            print("journeygraph: stopped; data kept for the next run")

    def _start_service(self, spec: ServiceSpec, settings: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start the service's process with these settings (names without the service's prefix)."""
        env = {**os.environ, **{f"{spec.env_prefix}{k}": v for k, v in settings.items()}}
        log = open(self.logs / f"{spec.name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.common.serve",
                "--factory",
                spec.app,
                "--host",
                "127.0.0.1",
                "--port",
                str(spec.port),
                "--no-access-log",
            ],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )

    def _wait_ready(self, *, deadline: float) -> None:
        pending = {s.name: f"http://127.0.0.1:{s.port}/readyz" for s in [*SERVICES, GATEWAY]}
        with httpx.Client(timeout=2) as client:
            while pending:
                for name, url in list(pending.items()):
                    proc = dict(self.procs)[name]
                    if proc.poll() is not None:
                        raise SystemExit(f"{name} failed to start; see {self.logs}/{name}.log")
                    try:
                        answer = client.get(url)  # 200 already while a service still connects to NATS
                        if answer.status_code == 200 and answer.json()["checks"].get("broker", "ok") == "ok":
                            del pending[name]
                    except httpx.HTTPError:
                        pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"not ready in time: {', '.join(pending)}; see {self.logs}")
                time.sleep(0.2)

    def _print_welcome(self, token: str, seconds: float) -> None:
        lines = [f"journeygraph is ready ({seconds:.1f} s).", ""]
        lines.append(f"  {GATEWAY.name:<9} http://127.0.0.1:{GATEWAY.port}/graphql   (GraphiQL in a browser)")
        for s in SERVICES:
            lines.append(f"  {s.name:<9} http://127.0.0.1:{s.port}   docs: http://127.0.0.1:{s.port}/docs")
        lines += [
            f"  nats      nats://127.0.0.1:{NATS_PORT}",
            f"  logs      {self.logs}",
            "",
            "Dev token (workspace 'demo', scope admin, 12 h) — more with `uv run journeygraph token --help`:",
            "",
            f"export JG_TOKEN={token}",
            "",
            f'Try: curl -s -H "Authorization: Bearer $JG_TOKEN" http://127.0.0.1:{SERVICES[0].port}/v1/journeys',
            "",
            "Ctrl-C stops everything; the next run keeps the data.",
        ]
        print("\n".join(lines), flush=True)
