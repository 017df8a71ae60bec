"""Background loops that run in every replica (outbox relay, webhook delivery, analysis, compaction)."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from typing import Protocol

import structlog

log = structlog.get_logger(__name__)


class Worker(Protocol):
    def start(self) -> None: ...

    async def stop(self) -> None: ...


class LoopWorker(ABC):
    """Does one batch of work after another; when a batch finds nothing more waiting, sleeps for
    `idle_seconds` or until `wake()`. A failing batch is logged and retried after the idle wait,
    so a database or broker outage delays work and loses nothing."""

    name = "worker"

    def __init__(self, *, idle_seconds: float) -> None:
        self._idle_seconds = idle_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    async def run_once(self) -> bool:
        """Do one batch; return True when more work may be waiting right now."""

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.wait({self._task})  # the loop's end; a cancellation of the caller propagates

    async def _run(self) -> None:
        while True:
            try:
                busy = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(f"{self.name} failed; retrying")
                busy = False
            if not busy:
                # Not asyncio.wait_for: on Python 3.11 a wake() and a cancel() in the same tick made
                # it return the wait's result and drop the cancellation, so stop() hung.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._idle_seconds):
                        await self._wake.wait()
                self._wake.clear()
