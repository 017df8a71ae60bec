"""Event → projection lag under a steady load: 1,000 interactions/s (bulk calls of 100) to the journey
service and 100 responses/s (single POSTs) to the feedback service, for LOAD_SECONDS, both in their
own uvicorn processes over real HTTP. The load comes from wrk (C; a Python client of this rate takes a
core of its own here), each connection pausing between requests so the rate holds (the achieved rate
is printed).

Two measures, each against the target p99 ≤ 1 s:
- per event, from its `occurred_at` (set in the writing request) to the commit of the consumer that
  applied it: the services' own `journeygraph_projection_lag_seconds` histograms, read from /metrics
  before and after the load (quantiles interpolated within buckets; the share within 1 s is exact,
  1 s being a bucket bound);
- read after write, as a client sees it: every PROBE_EVERY seconds a probe posts one interaction (one
  response) of its own and polls the reach (the NPS) that only probes feed until it counts it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.env import BenchEnv, percentile, until

LOAD_SECONDS, PROBE_EVERY = 30, 2.0
INTERACTIONS_PER_S, BULK = 1000, 100
RESPONSES_PER_S = 100
BENCH = Path(__file__).parent
BUCKET = re.compile(r'^journeygraph_projection_lag_seconds_bucket\{consumer="([^"]+)",le="([^"]+)"\} (\S+)$', re.M)


def _buckets(metrics: str) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for consumer, le, value in BUCKET.findall(metrics):
        out[consumer].append((float("inf") if le == "+Inf" else float(le), float(value)))
    return {c: sorted(v) for c, v in out.items()}


def _quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Prometheus' histogram_quantile: linear within the bucket holding the q-th observation."""
    total = buckets[-1][1]
    rank, lower, below = q * total, 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = bound, cumulative
    return lower


async def _model(journey: httpx.AsyncClient, feedback: httpx.AsyncClient) -> dict[str, str]:
    async def post(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await client.post(url, json=body)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    ids = {}
    for key in ["ad", "shop", "app", "support", "probe"]:
        ids[key] = (await post(journey, "/v1/touchpoints", {"key": key, "name": key, "channel": "web"}))["id"]
    stages = [{"key": k, "name": k.title()} for k in ("need", "buy", "use")]
    load = await post(journey, "/v1/journeys", {"key": "load", "name": "Load", "stages": stages})
    probe = await post(journey, "/v1/journeys", {"key": "probe", "name": "Probe", "stages": stages[:1]})
    load_stages = (await journey.get(f"/v1/journeys/{load['id']}/stages")).json()
    for n, key in enumerate(["ad", "shop", "app", "support"]):
        step = {"stage_id": load_stages[min(n, 2)]["id"], "touchpoint_id": ids[key]}
        await post(journey, f"/v1/journeys/{load['id']}/steps", step)
    probe_stage = (await journey.get(f"/v1/journeys/{probe['id']}/stages")).json()[0]
    await post(
        journey, f"/v1/journeys/{probe['id']}/steps", {"stage_id": probe_stage["id"], "touchpoint_id": ids["probe"]}
    )
    survey = await post(
        feedback,
        "/v1/surveys",
        {"key": "lag", "name": "Lag", "kind": "nps", "status": "active",
         "questions": [{"key": "recommend", "type": "nps", "required": True, "text": {"en": "Recommend?"}},
                       {"key": "reason", "type": "text", "text": {"en": "Why?"}}]},
    )  # fmt: skip
    return {"probe_journey": probe["id"], "survey": survey["id"]}


async def _wrk(url: str, script: str, headers: dict[str, str], *, rate: float, connections: int, **env: str) -> int:
    """Run wrk against `url` at about `rate` requests/s for LOAD_SECONDS; the requests it made."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{LOAD_SECONDS}s", "-s", str(BENCH / script), url]
    for name, value in headers.items():
        args[1:1] = ["-H", f"{name}: {value}"]
    # Per connection, between its requests (a request's own time, ~35 ms here, counts towards the rate).
    delay = str(max(0, int(connections * 1000 / rate) - 35))
    proc = await asyncio.create_subprocess_exec(
        *args, env={**os.environ, "DELAY_MS": delay, **env}, stdout=asyncio.subprocess.PIPE
    )
    out = (await proc.communicate())[0].decode()
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"{url}: failed requests under load:\n{out}")
    made = re.search(r"(\d+) requests in", out)
    assert made, out
    return int(made[1])


async def main(env: BenchEnv) -> None:
    if shutil.which("wrk") is None:
        print("skipped: wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
        return
    workspace = "bench"
    jbase = await env.serve("services.journey.app:create_app", env_prefix="JOURNEY_", database="bench_lag_journey")
    fbase = await env.serve("services.feedback.app:create_app", env_prefix="FEEDBACK_", database="bench_lag_feedback")
    headers = {"Authorization": f"Bearer {env.token(workspace, ['admin'])}"}
    limits = httpx.Limits(max_connections=64)
    async with (
        httpx.AsyncClient(base_url=jbase, headers=headers, timeout=30, limits=limits) as journey,
        httpx.AsyncClient(base_url=fbase, headers=headers, timeout=30, limits=limits) as feedback,
    ):
        ids = await _model(journey, feedback)
        before = {
            s: _buckets((await c.get("/metrics")).text) for s, c in (("journey", journey), ("feedback", feedback))
        }
        seen: dict[str, list[float]] = {"journey": [], "feedback": []}

        async def probe(n: int) -> None:
            started = time.perf_counter()
            item = {"event_id": f"probe-{n}", "customer": f"probe-{n}", "touchpoint": "probe",
                    "occurred_at": datetime.now(UTC).isoformat()}  # fmt: skip
            (await journey.post("/v1/interactions", json=item)).raise_for_status()

            async def reached() -> bool:
                steps = (await journey.get(f"/v1/journeys/{ids['probe_journey']}/reach")).json()["steps"]
                return bool(steps) and steps[0]["customers"] > n

            await until(reached, every=0.02)
            seen["journey"].append(time.perf_counter() - started)  # from the POST to the read that shows it
            started = time.perf_counter()
            body = {"survey_id": ids["survey"], "response_id": f"probe-{n}", "touchpoint_key": "probe",
                    "answers": {"recommend": 10}}  # fmt: skip
            (await feedback.post("/v1/responses", json=body)).raise_for_status()

            async def counted() -> bool:
                nps = (await feedback.get("/v1/metrics/nps", params={"touchpoint": "probe"})).json()
                return bool(nps["overall"]["n"] > n)

            await until(counted, every=0.02)
            seen["feedback"].append(time.perf_counter() - started)

        async def probes() -> None:
            for n in range(int(LOAD_SECONDS / PROBE_EVERY)):
                await asyncio.gather(probe(n), asyncio.sleep(PROBE_EVERY))

        started = time.perf_counter()
        sent = await asyncio.gather(
            _wrk(f"{jbase}/v1/interactions/bulk", "post_interactions.lua", headers, rate=INTERACTIONS_PER_S / BULK,
                 connections=3, BULK=str(BULK), TAG="load"),
            _wrk(f"{fbase}/v1/responses", "post_response.lua", headers, rate=RESPONSES_PER_S, connections=10,
                 SID=ids["survey"], TAG="load", KEY="1"),
            probes(),
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        await asyncio.sleep(5)  # what is still in flight reaches the histograms
        after = {s: _buckets((await c.get("/metrics")).text) for s, c in (("journey", journey), ("feedback", feedback))}
    print(
        f"steady load for {elapsed:.0f} s (wrk): {sent[0] * BULK / elapsed:,.0f} interactions/s in bulk calls of "
        f"{BULK}, {sent[1] / elapsed:,.0f} responses/s as single POSTs"
    )
    print(f"{'consumer':<28}{'events':>9}{'p50 ms':>10}{'p99 ms':>10}{'<= 1 s':>10}{'p99 <= 1 s':>12}")
    for service in ("journey", "feedback"):
        for consumer, buckets in sorted(after[service].items()):
            old = dict(before[service].get(consumer, []))
            diff = [(bound, value - old.get(bound, 0.0)) for bound, value in buckets]
            total = diff[-1][1]
            if not total:
                continue
            within = next(v for b, v in diff if b == 1.0) / total
            p50, p99 = _quantile(diff, 0.5) * 1000, _quantile(diff, 0.99) * 1000
            verdict = "met" if within >= 0.99 else "NOT met"
            print(f"{consumer:<28}{total:>9,.0f}{p50:>10.0f}{p99:>10.0f}{within:>10.1%}{verdict:>12}")
    for service, waits in seen.items():
        if waits:
            ms = [w * 1000 for w in waits]
            print(
                f"read after write ({service}): {len(ms)} probes, p50 {percentile(ms, 50):.0f} ms, "
                f"max {max(ms):.0f} ms (target: within about a second)"
            )
