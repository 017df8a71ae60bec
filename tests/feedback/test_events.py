from __future__ import annotations

import time

import nats
import orjson
from nats.js.api import DeliverPolicy

from tests.conftest import Servers
from tests.feedback.factories import FeedbackApi


class TestEvents:
    async def test_response_submitted_reaches_jetstream_through_outbox(
        self, api: FeedbackApi, servers: Servers
    ) -> None:
        survey = await api.survey(target={"type": "touchpoint", "touchpoint_key": "shop"})
        nc = await nats.connect(servers.nats_url)
        try:
            js = nc.jetstream()
            sub = await js.subscribe(
                "feedback.response.submitted", deliver_policy=DeliverPolicy.NEW, ordered_consumer=True
            )
            stored = await api.respond(survey["id"], {"recommend": 6}, channel="app")
            deadline = time.monotonic() + 15
            while True:
                msg = await sub.next_msg(timeout=max(0.1, deadline - time.monotonic()))
                event = orjson.loads(msg.data)
                if event["workspace_id"] == api.workspace:
                    break
            assert msg.headers is not None
            assert msg.headers["Nats-Msg-Id"] == event["id"]
            data = event["data"]
            assert data["id"] == stored["id"]
            assert (data["nps"], data["nps_category"], data["touchpoint_key"], data["channel"]) == (
                6,
                "detractor",
                "shop",
                "app",
            )
        finally:
            await nc.close()
