"""A real HTTP receiver on 127.0.0.1 (uvicorn in the test's event loop) that records requests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.common.embedded import free_port


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int
    at: float = 0.0  # time.monotonic() when it arrived


@dataclass
class Receiver:
    url: str
    fail_next: int = 0  # answer this many requests with 500 before succeeding
    delay: float = 0.0  # seconds before answering (a slow receiver); the receiver's stop ends the wait
    requests: list[Received] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def delivered(self) -> list[Received]:
        return [r for r in self.requests if r.answered == 204]


@contextlib.asynccontextmanager
async def run_receiver() -> AsyncIterator[Receiver]:
    port = free_port()
    receiver = Receiver(url=f"http://127.0.0.1:{port}/hook")

    async def hook(request: Request) -> Response:
        status = 204
        if receiver.fail_next > 0:
            receiver.fail_next -= 1
            status = 500
        receiver.requests.append(Received(dict(request.headers), await request.body(), status, time.monotonic()))
        if receiver.delay:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(receiver.delay):
                    await receiver.stopping.wait()
        return Response(status_code=status)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.02)
    try:
        yield receiver
    finally:
        receiver.stopping.set()
        server.should_exit = True
        await task
