"""`make run` as a newcomer uses it: `journeygraph up` is ready within 60 s, serves the demo
workspace, stops every process on Ctrl-C, and keeps the data for the next run."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Up:
    """A running `journeygraph up`: its output, read as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, *, within: float) -> str:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = next((line for line in list(self.lines) if text in line), None)
            if found is not None:
                return found
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not printed within {within} s:\n{self.output}")


@contextmanager
def journeygraph_up(
    home: Path, base_port: int, nats_port: int, *, demo: bool = True
) -> Iterator[tuple[str, float, Up]]:
    env = {**os.environ, "JOURNEYGRAPH_HOME": str(home), "JOURNEYGRAPH_BASE_PORT": str(base_port),
           "JOURNEYGRAPH_NATS_PORT": str(nats_port)}  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.common.cli", "up", *([] if demo else ["--no-demo"])],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    up = Up(proc)
    try:
        up.wait_for("is ready", within=120)
        ready_after = time.monotonic() - started
        up.wait_for("Ctrl-C", within=10)
        token = re.search(r"export JG_TOKEN=(\S+)", up.output)
        assert token, up.output
        yield token.group(1), ready_after, up
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, up.output


def pid_serving(port: int) -> int | None:
    """The service process started with `--port port`."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"services.common.serve" in args and b"--port" in args and str(port).encode() in args:
                return int(entry.name)
    return None


def free_ports(n: int) -> int:
    """The first of n consecutive free ports (the base port and the services after it, then NATS),
    below the ephemeral range: there, any outgoing connection may take base + 1 after the check."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        first = random.randrange(10_000, low - n)
        try:
            with ExitStack() as stack:
                for port in range(first, first + n):
                    stack.enter_context(socket.create_server(("127.0.0.1", port)))
            return first
        except OSError:
            continue
    raise RuntimeError(f"no {n} consecutive free ports below {low}")


def test_up_is_ready_serves_the_demo_and_stops_cleanly(tmp_path: Path) -> None:
    base = free_ports(5)
    nats_port = base + 4  # after journey, feedback, scoring
    journey_port, feedback_port = base + 1, base + 2
    with journeygraph_up(tmp_path, base, nats_port) as (token, ready_after, _):
        assert ready_after < 60
        assert httpx.get(f"http://127.0.0.1:{journey_port}/readyz").status_code == 200
        headers = {"Authorization": f"Bearer {token}"}
        journeys = httpx.get(f"http://127.0.0.1:{journey_port}/v1/journeys", headers=headers).json()["items"]
        assert {j["key"] for j in journeys} == {"switch-supplier", "switch-supplier-target"}
        current = next(j for j in journeys if j["key"] == "switch-supplier")
        doc = httpx.get(f"http://127.0.0.1:{journey_port}/v1/journeys/{current['id']}/map", headers=headers).json()
        assert [s["key"] for s in doc["stages"]] == ["need", "buy", "use"]
        assert sum(len(s["steps"]) for s in doc["stages"]) == 10
        funnel = httpx.get(f"http://127.0.0.1:{journey_port}/v1/journeys/{current['id']}/funnel", headers=headers)
        assert funnel.json()["groups"][0]["stages"][1]["customers"] > 0
        nps = httpx.get(f"http://127.0.0.1:{feedback_port}/v1/metrics/nps", headers=headers).json()
        answered = nps["overall"]["n"]
        assert answered > 50
        # the gateway serves the unified view of the same journey
        query = '{ journey(key: "switch-supplier") { stages { steps { touchpoint { key } score { reachN } } } } }'
        view = httpx.post(f"http://127.0.0.1:{base}/graphql", headers=headers, json={"query": query}).json()
        steps = [st for s in view["data"]["journey"]["stages"] for st in s["steps"]]
        assert len(steps) == 10
        assert all(st["score"]["reachN"] >= 0 for st in steps)
    assert not _listening(base), "the gateway outlived Ctrl-C"
    assert not _listening(journey_port), "the journey service outlived Ctrl-C"
    assert not _listening(feedback_port), "the feedback service outlived Ctrl-C"
    assert not _listening(nats_port), "nats-server outlived Ctrl-C"

    # the second run keeps the data and does not load the demo twice
    with journeygraph_up(tmp_path, base, nats_port) as (token, _, _):
        headers = {"Authorization": f"Bearer {token}"}
        journeys = httpx.get(f"http://127.0.0.1:{journey_port}/v1/journeys", headers=headers).json()["items"]
        assert len(journeys) == 2
        touchpoints = httpx.get(
            f"http://127.0.0.1:{journey_port}/v1/touchpoints", headers=headers, params={"limit": 100}
        ).json()["items"]
        assert len(touchpoints) == 11
        again = httpx.get(f"http://127.0.0.1:{feedback_port}/v1/metrics/nps", headers=headers).json()
        assert again["overall"]["n"] == answered


def test_up_restarts_a_service_that_died_and_ctrl_c_still_stops_everything(tmp_path: Path) -> None:
    base = free_ports(5)
    nats_port = base + 4  # after journey, feedback, scoring
    journey_port, feedback_port = base + 1, base + 2
    with journeygraph_up(tmp_path, base, nats_port, demo=False) as (_, _, up):
        pid = pid_serving(journey_port)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # a crash: the others, PostgreSQL and NATS go on
        up.wait_for("journey exited with code -9; restarting in 1 s", within=15)
        up.wait_for("journey restarted", within=15)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{journey_port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, up.output
            time.sleep(0.2)
        assert pid_serving(journey_port) not in (None, pid)
        assert httpx.get(f"http://127.0.0.1:{feedback_port}/readyz", timeout=2).status_code == 200
    assert not _listening(journey_port), "the restarted journey service outlived Ctrl-C"
    assert not _listening(feedback_port), "the feedback service outlived Ctrl-C"
    assert not _listening(nats_port), "nats-server outlived Ctrl-C"
