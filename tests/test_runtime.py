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
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def journeygraph_up(home: Path, base_port: int, nats_port: int) -> Iterator[tuple[str, float]]:
    env = {**os.environ, "JOURNEYGRAPH_HOME": str(home), "JOURNEYGRAPH_BASE_PORT": str(base_port),
           "JOURNEYGRAPH_NATS_PORT": str(nats_port)}  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.common.cli", "up"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    output: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if "is ready" in line:
                break
        ready_after = time.monotonic() - started
        for line in proc.stdout:
            output.append(line)
            if line.startswith("Ctrl-C"):
                break
        token = re.search(r"export JG_TOKEN=(\S+)", "".join(output))
        assert token, "".join(output)
        yield token.group(1), ready_after
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, "".join(output)


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
    base = free_ports(4)
    nats_port = base + 3
    journey_port, feedback_port = base + 1, base + 2
    with journeygraph_up(tmp_path, base, nats_port) as (token, ready_after):
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
    assert not _listening(journey_port), "the journey service outlived Ctrl-C"
    assert not _listening(feedback_port), "the feedback service outlived Ctrl-C"
    assert not _listening(nats_port), "nats-server outlived Ctrl-C"

    # the second run keeps the data and does not load the demo twice
    with journeygraph_up(tmp_path, base, nats_port) as (token, _):
        headers = {"Authorization": f"Bearer {token}"}
        journeys = httpx.get(f"http://127.0.0.1:{journey_port}/v1/journeys", headers=headers).json()["items"]
        assert len(journeys) == 2
        touchpoints = httpx.get(
            f"http://127.0.0.1:{journey_port}/v1/touchpoints", headers=headers, params={"limit": 100}
        ).json()["items"]
        assert len(touchpoints) == 11
        again = httpx.get(f"http://127.0.0.1:{feedback_port}/v1/metrics/nps", headers=headers).json()
        assert again["overall"]["n"] == answered
