"""What the feedback service publishes: every state change as an event naming its aggregate and that
aggregate's version, through the outbox to JetStream, and documented in its AsyncAPI."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import nats
import orjson
from fastapi import FastAPI
from nats.js.api import DeliverPolicy

from services.feedback.events import PUBLISHED
from tests.conftest import Servers
from tests.events import published_events
from tests.eventually import eventually
from tests.feedback.factories import FeedbackApi


async def events_of(
    app: FastAPI, servers: Servers, workspace: str, until: Callable[[list[dict[str, Any]]], bool] = bool
) -> list[dict[str, Any]]:
    """The workspace's events in the stream, once `until` holds for them."""

    async def read() -> list[dict[str, Any]] | None:
        found = await published_events(app, servers.nats_url, workspace, stream="FEEDBACK")
        return found if until(found) else None

    return await eventually(read)


def versions(events: list[dict[str, Any]], prefix: str) -> list[tuple[str, str, int]]:
    return [(e["type"], e["aggregate_id"], e["version"]) for e in events if e["type"].startswith(prefix)]


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
            assert (event["aggregate_id"], event["version"]) == (stored["id"], 1)
            data = event["data"]
            assert data == stored
            assert (data["nps"], data["nps_category"], data["touchpoint_key"], data["channel"]) == (
                6,
                "detractor",
                "shop",
                "app",
            )
        finally:
            await nc.close()

    async def test_a_response_its_analysis_and_its_case_carry_versions(
        self, api: FeedbackApi, feedback_app: FastAPI, servers: Servers
    ) -> None:
        survey = await api.survey()
        stored = await api.respond(survey["id"], {"recommend": 2}, comment="Far too expensive, very disappointed.")
        (case,) = await api.cases(1)
        url = f"/v1/cases/{case['id']}"
        assert (await api.patch(url, json={"status": "in_progress"})).status_code == 200
        await api.created(f"{url}/notes", {"text": "Called back."})
        assert (await api.patch(url, json={"status": "closed"})).status_code == 200

        events = await events_of(
            feedback_app, servers, api.workspace, lambda es: any(e["type"] == "feedback.comment.analysed" for e in es)
        )
        assert versions(events, "feedback.response.") == [("feedback.response.submitted", stored["id"], 1)]
        (analysed,) = [e for e in events if e["type"] == "feedback.comment.analysed"]
        assert (analysed["aggregate_id"], analysed["version"]) == (stored["id"], 2)
        assert analysed["data"]["themes"] == ["price"]
        assert analysed["data"]["sentiment"] < 0
        assert versions(events, "feedback.case.") == [
            ("feedback.case.opened", stored["id"], 1),
            ("feedback.case.updated", stored["id"], 2),
            ("feedback.case.updated", stored["id"], 3),
            ("feedback.case.closed", stored["id"], 4),
        ]
        assert versions(events, "feedback.survey.") == [("feedback.survey.created", survey["id"], 1)]

    async def test_rules_webhooks_settings_and_opt_outs_are_published_with_increasing_versions(
        self, api: FeedbackApi, feedback_app: FastAPI, servers: Servers
    ) -> None:
        admin = api.admin()
        assert (await admin.put("/v1/settings", json={"allow_private_webhook_targets": True})).status_code == 200
        settings = await admin.put("/v1/settings", json={"allow_private_webhook_targets": True, "quiet_days": 3})
        assert settings.json()["version"] == 2

        rule = await api.created("/v1/loop-rules", {"name": "Low", "metric": "nps", "max_score": 3})
        assert (await api.patch(f"/v1/loop-rules/{rule['id']}", json={"max_score": 4})).json()["version"] == 2
        assert (await api.delete(f"/v1/loop-rules/{rule['id']}")).status_code == 204

        hook = await admin.created("/v1/webhooks", {"url": "http://127.0.0.1:9/x", "event_types": ["feedback.case.*"]})
        changed = await admin.patch(f"/v1/webhooks/{hook['id']}", json={"enabled": False})
        assert changed.json()["version"] == 2
        assert (await admin.delete(f"/v1/webhooks/{hook['id']}")).status_code == 204

        await api.created("/v1/opt-outs", {"customer_external_id": "C-1", "reason": "phone"})
        assert (await api.delete("/v1/opt-outs/C-1")).status_code == 204
        await api.created("/v1/opt-outs", {"customer_external_id": "C-1"})

        events = await published_events(feedback_app, servers.nats_url, api.workspace, stream="FEEDBACK")
        assert versions(events, "feedback.settings.") == [
            ("feedback.settings.updated", api.workspace, 1),
            ("feedback.settings.updated", api.workspace, 2),
        ]
        assert events[1]["data"]["quiet_days"] == 3
        assert versions(events, "feedback.loop_rule.") == [
            ("feedback.loop_rule.created", rule["id"], 1),
            ("feedback.loop_rule.updated", rule["id"], 2),
            ("feedback.loop_rule.deleted", rule["id"], 3),
        ]
        assert versions(events, "feedback.webhook.") == [
            ("feedback.webhook.created", hook["id"], 1),
            ("feedback.webhook.updated", hook["id"], 2),
            ("feedback.webhook.deleted", hook["id"], 3),
        ]
        webhook_events = [e for e in events if e["type"].startswith("feedback.webhook.")]
        assert all("secret" not in e["data"] for e in webhook_events)
        assert not any(hook["secret"] in orjson.dumps(e).decode() for e in events)
        assert versions(events, "feedback.opt_out.") == [
            ("feedback.opt_out.added", "C-1", 1),
            ("feedback.opt_out.withdrawn", "C-1", 2),
            ("feedback.opt_out.added", "C-1", 3),
        ]
        withdrawn = next(e for e in events if e["type"] == "feedback.opt_out.withdrawn")
        assert withdrawn["data"]["withdrawn_at"] is not None

    async def test_every_subject_is_documented_in_asyncapi(self, api: FeedbackApi) -> None:
        document = (await api.http.get("/asyncapi.json")).text
        missing = [subject for subject in PUBLISHED if subject not in document]
        assert missing == []
