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
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI

from services.feedback.delivery import Claim, DeliveryWorker
from services.feedback.settings import FeedbackSettings
from services.feedback.store import webhooks as webhooks_store
from services.feedback.store.webhooks import new_secret
from tests.eventually import eventually
from tests.feedback.factories import FeedbackApi
from tests.feedback.receiver import make_tls, run_receiver
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


class TestTls:
    async def test_https_goes_to_the_checked_address_and_verifies_the_certificate_for_the_name(
        self,
        feedback_app: FastAPI,
        feedback_settings: FeedbackSettings,
        dns: dict[str, list[Any]],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """One attempt, sent by a worker that trusts the test CA (httpx reads SSL_CERT_FILE when it builds
        its client), to a receiver whose certificate names only `receiver.test`: it verifies only if TLS
        checks the name (and sends it as SNI) while the connection goes to 127.0.0.1."""
        tls = make_tls(tmp_path, "receiver.test")
        monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
        worker = DeliveryWorker(feedback_app.state.engine, feedback_settings)
        dns["receiver.test"] = [LOOPBACK]
        async with run_receiver(tls) as receiver:

            def claim(url: str) -> Claim:
                return Claim(
                    id=uuid.uuid4(),
                    subscription_id=uuid.uuid4(),
                    event_id=uuid.uuid4(),
                    payload=b'{"id": 1}',
                    attempts=0,
                    lease=datetime.now(UTC),
                    url=url,
                    secret=new_secret(),
                    allow_private=True,
                )

            sent = await worker._attempt(claim(receiver.url))
            assert (sent["code"], sent["error"]) == (204, None)
            (request,) = receiver.requests
            assert request.headers["host"] == urlsplit(receiver.url).netloc

            # the same server under a name its certificate does not have
            dns["elsewhere.test"] = [LOOPBACK]
            refused = await worker._attempt(claim(receiver.url.replace("receiver.test", "elsewhere.test")))
            assert refused["code"] is None
            assert "CERTIFICATE_VERIFY_FAILED" in refused["error"], refused
        await worker.stop()
