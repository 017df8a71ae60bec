"""Where a delivery may go: the target is resolved once per attempt, every address it has is checked,
and the request goes to the checked address (DNS rebinding cannot slip a private one in between).

These tests answer DNS themselves: they replace `services.feedback.store.webhooks.resolve`, our own
function and the only place the service resolves a webhook's host, with a table they control (a real
rebinding attack needs a DNS server that answers differently from one query to the next). That the
delivery then reaches the receiver at the address the table gave, for a name no real resolver knows,
shows that nothing else resolves the name on the way.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

import pytest

from services.feedback.store import webhooks as webhooks_store
from tests.eventually import eventually
from tests.feedback.factories import FeedbackApi
from tests.feedback.receiver import run_receiver
from tests.feedback.test_webhooks import allow_loopback, deliveries, settled

PUBLIC = ipaddress.ip_address("93.184.215.14")
LOOPBACK = ipaddress.ip_address("127.0.0.1")
LINK_LOCAL = ipaddress.ip_address("169.254.169.254")


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """The answers `resolve` gives, by host name; a test changes them as a rebinding DNS server would."""
    answers: dict[str, list[Any]] = {}

    async def resolve(host: str, port: int) -> list[Any]:
        return list(answers.get(host) or [ipaddress.ip_address(host)])

    monkeypatch.setattr(webhooks_store, "resolve", resolve, raising=False)  # before the fix, nothing called it
    return answers


class TestRebinding:
    async def test_a_name_that_turns_private_after_creation_is_refused_at_send_time(
        self, api: FeedbackApi, dns: dict[str, list[Any]]
    ) -> None:
        async with run_receiver() as receiver:
            port = urlsplit(receiver.url).port
            dns["hooks.partner.example"] = [PUBLIC]
            admin = api.admin()
            hook = await admin.created(
                "/v1/webhooks",
                {"url": f"http://hooks.partner.example:{port}/hook", "event_types": ["feedback.response.submitted"]},
            )
            # Rebound: the name now points at this machine and at the cloud metadata service too.
            dns["hooks.partner.example"] = [PUBLIC, LINK_LOCAL, LOOPBACK]
            survey = await api.survey()
            await api.respond(survey["id"], {"recommend": 9})

            async def refused_twice() -> dict[str, Any] | None:
                found = await deliveries(api, hook)
                return found[0] if found and found[0]["attempts"] >= 2 else None

            delivery = await eventually(refused_twice)
            for attempt in delivery["log"]:
                assert attempt["status_code"] is None
                assert "target refused" in attempt["error"], attempt
                assert "(127.0.0.1, 169.254.169.254)" in attempt["error"], attempt
            assert receiver.requests == []

    async def test_the_request_goes_to_the_address_that_was_checked(
        self, api: FeedbackApi, dns: dict[str, list[Any]]
    ) -> None:
        await allow_loopback(api)  # the receiver is on this machine
        async with run_receiver() as receiver:
            port = urlsplit(receiver.url).port
            dns["receiver.invalid"] = [LOOPBACK]  # `.invalid` never resolves in real DNS (RFC 6761)
            hook = await api.admin().created(
                "/v1/webhooks",
                {"url": f"http://receiver.invalid:{port}/hook", "event_types": ["feedback.response.submitted"]},
            )
            survey = await api.survey()
            await api.respond(survey["id"], {"recommend": 9})
            (log,) = await settled(api, hook, 1)
            assert (log["status"], log["attempts"]) == ("succeeded", 1), log["log"]
            (request,) = receiver.requests
            assert request.headers["host"] == f"receiver.invalid:{port}"
