"""The background loop every service runs (outbox relay, webhook delivery, analysis)."""

from __future__ import annotations

import asyncio

from services.common.worker import LoopWorker


class Idle(LoopWorker):
    name = "idle"

    def __init__(self) -> None:
        super().__init__(idle_seconds=30)
        self.batches = 0

    async def run_once(self) -> bool:
        self.batches += 1
        return False


async def test_stop_right_after_a_wake_ends_the_loop() -> None:
    # A commit wakes the relay and the service shuts down in the same tick: with Python 3.11's
    # asyncio.wait_for the wake completed the wait and swallowed the cancellation, so the loop ran on
    # and shutdown hung until the server's timeout (seen as a 5 s lifespan timeout in the tests).
    worker = Idle()
    worker.start()
    await asyncio.sleep(0.05)  # idle in its wait
    assert worker.batches == 1
    worker.wake()
    async with asyncio.timeout(2):  # TimeoutError: the loop did not end
        await worker.stop()  # in this tick, as a shutdown right after a commit
    done = worker.batches
    await asyncio.sleep(0.05)
    assert worker.batches == done  # the loop has ended


async def test_wake_runs_a_batch_at_once() -> None:
    worker = Idle()
    worker.start()
    await asyncio.sleep(0.05)
    worker.wake()
    await asyncio.sleep(0.05)
    assert worker.batches == 2
    await worker.stop()
