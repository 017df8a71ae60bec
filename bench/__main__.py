"""`make bench`: run every benchmark (or those named: `python -m bench journey_map`)."""

from __future__ import annotations

import asyncio
import importlib
import sys

# Each module has `async def main(env: BenchEnv) -> None` and prints its own table.
BENCHES = [
    "journey_map",
    "feedback_ingest",
    "feedback_metrics",
    "journey_ingest",
    "journey_analytics",
    "projection_lag",
    "scoring",
    "gateway",
]


async def run(names: list[str]) -> None:
    from bench.env import BenchEnv

    async with BenchEnv.start() as env:
        for name in names:
            module = importlib.import_module(f"bench.{name}")
            print(f"\n== {name} ==", flush=True)
            env.next_bench()
            await module.main(env)


if __name__ == "__main__":
    chosen = sys.argv[1:] or BENCHES
    unknown = set(chosen) - set(BENCHES)
    if unknown:
        sys.exit(f"unknown benchmark(s): {', '.join(sorted(unknown))}; choose from {', '.join(BENCHES)}")
    asyncio.run(run(chosen))
