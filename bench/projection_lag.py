"""Event → projection lag under a steady load: 1,000 interactions/s (bulk calls of 100) to the journey
service and 100 responses/s (single POSTs) to the feedback service, for LOAD_SECONDS, both in their
own uvicorn processes over real HTTP.

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
import re
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import httpx

from bench.env import BenchEnv, percentile

LOAD_SECONDS, PROBE_EVERY = 30, 2.0
INTERACTIONS_PER_S, BULK = 1000, 100
RESPONSES_PER_S = 100
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
         "questions": [{"key": "recommend", "type": "nps", "required": True, "text": {"en": "Recommend?"}}]},
    )  # fmt: skip
    return {"probe_journey": probe["id"], "survey": survey["id"]}


async def _at_rate(per_second: float, seconds: float, send: Any) -> int:
    """Call `send(n)` per_second times a second, on schedule (late calls are not made up in a burst)."""
    started, n, tasks = time.perf_counter(), 0, set()
    while (elapsed := time.perf_counter() - started) < seconds:
        due = int(elapsed * per_second) + 1
        while n < due:
            task = asyncio.create_task(send(n))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.sleep(max(0.0, n / per_second - (time.perf_counter() - started)))
    await asyncio.gather(*tasks)
    return n


async def main(env: BenchEnv) -> None:
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
        failures: list[str] = []

        async def interactions(n: int) -> None:
            now = datetime.now(UTC).isoformat()
            keys = ["ad", "shop", "app", "support"]
            items = [{"event_id": f"load-{n}-{i}", "customer": f"c-{(n * BULK + i) % 20000}",
                      "touchpoint": keys[(n + i) % 4], "occurred_at": now} for i in range(BULK)]  # fmt: skip
            r = await journey.post("/v1/interactions/bulk", json={"items": items})
            if r.status_code != 200:
                failures.append(f"interactions {r.status_code}")

        async def responses(n: int) -> None:
            body = {"survey_id": ids["survey"], "response_id": f"load-{n}", "customer_external_id": f"c-{n % 5000}",
                    "touchpoint_key": f"tp-{n % 20}", "answers": {"recommend": n % 11}}  # fmt: skip
            r = await feedback.post("/v1/responses", json=body, headers={"Idempotency-Key": f"load-{n}"})
            if r.status_code != 201:
                failures.append(f"response {r.status_code}")

        seen: dict[str, list[float]] = {"journey": [], "feedback": []}

        async def probe(n: int) -> None:
            started = time.perf_counter()
            item = {"event_id": f"probe-{n}", "customer": f"probe-{n}", "touchpoint": "probe",
                    "occurred_at": datetime.now(UTC).isoformat()}  # fmt: skip
            (await journey.post("/v1/interactions", json=item)).raise_for_status()
            while True:
                reach = (await journey.get(f"/v1/journeys/{ids['probe_journey']}/reach")).json()
                if reach["steps"] and reach["steps"][0]["customers"] > n:
                    break
                await asyncio.sleep(0.02)
            seen["journey"].append(time.perf_counter() - started)
            started = time.perf_counter()
            body = {"survey_id": ids["survey"], "response_id": f"probe-{n}", "touchpoint_key": "probe",
                    "answers": {"recommend": 10}}  # fmt: skip
            (await feedback.post("/v1/responses", json=body)).raise_for_status()
            while True:
                nps = (await feedback.get("/v1/metrics/nps", params={"touchpoint": "probe"})).json()
                if nps["overall"]["n"] > n:
                    break
                await asyncio.sleep(0.02)
            seen["feedback"].append(time.perf_counter() - started)

        async def probes() -> None:
            for n in range(int(LOAD_SECONDS / PROBE_EVERY)):
                await asyncio.gather(probe(n), asyncio.sleep(PROBE_EVERY))

        started = time.perf_counter()
        sent = await asyncio.gather(
            _at_rate(INTERACTIONS_PER_S / BULK, LOAD_SECONDS, interactions),
            _at_rate(RESPONSES_PER_S, LOAD_SECONDS, responses),
            probes(),
        )
        elapsed = time.perf_counter() - started
        await asyncio.sleep(5)  # what is still in flight reaches the histograms
        after = {s: _buckets((await c.get("/metrics")).text) for s, c in (("journey", journey), ("feedback", feedback))}
    print(
        f"steady load for {elapsed:.0f} s: {sent[0] * BULK / elapsed:,.0f} interactions/s in bulk calls of {BULK}, "
        f"{sent[1] / elapsed:,.0f} responses/s as single POSTs; {len(failures)} failed calls {failures[:3]}"
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
