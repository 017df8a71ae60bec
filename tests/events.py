"""Reading what really reached JetStream, for tests."""

from __future__ import annotations

from typing import Any

import nats
import orjson
from fastapi import FastAPI
from nats.js.api import ConsumerConfig, DeliverPolicy


async def published_events(
    app: FastAPI, nats_url: str, workspace: str, *, stream: str = "JOURNEY"
) -> list[dict[str, Any]]:
    """Every event of `workspace` in the stream, in stream order, after the app's outbox is drained."""
    await app.state.relay.drain()
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        last = (await js.stream_info(stream)).state.last_seq
        sub = await js.pull_subscribe(
            "", stream=stream, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, filter_subject=None)
        )
        out: list[dict[str, Any]] = []
        seen = 0
        while seen < last:
            for msg in await sub.fetch(500, timeout=5):
                seen = msg.metadata.sequence.stream
                body = orjson.loads(msg.data)
                if body["workspace_id"] == workspace:
                    out.append({**body, "_headers": dict(msg.headers or {})})
                await msg.ack()
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()
