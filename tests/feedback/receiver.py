"""A real HTTP receiver on 127.0.0.1 (uvicorn in the test's event loop) that records requests."""

from __future__ import annotations

import asyncio
import contextlib
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


@dataclass
class Receiver:
    url: str
    fail_next: int = 0  # answer this many requests with 500 before succeeding
    requests: list[Received] = field(default_factory=list)

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
        receiver.requests.append(Received(dict(request.headers), await request.body(), status))
        return Response(status_code=status)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.02)
    try:
        yield receiver
    finally:
        server.should_exit = True
        await task
