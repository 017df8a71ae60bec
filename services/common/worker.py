"""Background loops that run in every replica (outbox relay, webhook delivery, analysis, compaction)."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from typing import Protocol

import structlog
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

log = structlog.get_logger(__name__)
_WAKES = "wake_on_commit"


def wake_on_commit(session: AsyncSession, worker: str) -> None:
    """Wake this process's worker registered as `worker` in the sessionmaker's `info` (name -> its
    `wake`) once the session's transaction commits, not before: it would find nothing new yet. Polling
    covers everything else (other processes, restarts)."""
    session.info.setdefault(_WAKES, set()).add(worker)


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    for worker in session.info.pop(_WAKES, ()):
        wake = session.info.get(worker)
        if wake is not None:
            wake()


@event.listens_for(Session, "after_rollback")
def _forget_wakes(session: Session) -> None:
    session.info.pop(_WAKES, None)


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
