"""Who may change webhook subscriptions, and the shape both of their request bodies share.

A subscription sends this workspace's events to a URL of the caller's choice, so creating, changing and
deleting one needs scope `admin`; `feedback:write` (what an integration that records responses holds)
is not enough. Reading them stays `feedback:read`.
"""

from __future__ import annotations

from fastapi import FastAPI

from tests.feedback.factories import FeedbackApi

HOOK = {"url": "http://127.0.0.1:9/hook", "event_types": ["feedback.case.*"]}


class TestWebhookAccess:
    async def test_writer_may_not_create_change_or_delete_a_subscription(self, api: FeedbackApi) -> None:
        admin = api.admin()
        assert (await admin.put("/v1/settings", json={"allow_private_webhook_targets": True})).status_code == 200
        writer = api  # feedback:read + feedback:write

        refused = await writer.post("/v1/webhooks", json=HOOK)
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")

        hook = await admin.created("/v1/webhooks", HOOK)
        path = f"/v1/webhooks/{hook['id']}"
        assert (await writer.patch(path, json={"enabled": False})).status_code == 403
        assert (await writer.delete(path)).status_code == 403
        assert (await writer.get(path)).json()["enabled"] is True  # reading needs only feedback:read

        changed = await admin.patch(path, json={"enabled": False})
        assert changed.status_code == 200, changed.text
        assert changed.json()["enabled"] is False
        assert (await admin.delete(path)).status_code == 204
        assert (await writer.get(path)).status_code == 404

    async def test_update_takes_the_event_types_create_takes(self, feedback_app: FastAPI, api: FeedbackApi) -> None:
        schemas = feedback_app.openapi()["components"]["schemas"]
        created = schemas["WebhookCreate"]["properties"]["event_types"]
        (updated, null) = schemas["WebhookUpdate"]["properties"]["event_types"]["anyOf"]
        assert null == {"type": "null"}
        assert {k: v for k, v in created.items() if k != "title"} == updated
        assert updated["items"]["pattern"].startswith("^")

        admin = api.admin()
        assert (await admin.put("/v1/settings", json={"allow_private_webhook_targets": True})).status_code == 200
        hook = await admin.created("/v1/webhooks", HOOK)
        bad = await admin.patch(f"/v1/webhooks/{hook['id']}", json={"event_types": ["journey.x.y"]})
        assert bad.status_code == 422, bad.text
        assert bad.json()["errors"][0]["field"] == "event_types"
