"""Production auth (keys from an OIDC issuer's JWKS over HTTP) and the dev-token CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jwt
import pytest
import sqlalchemy as sa
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from services.common.db import ensure_database
from services.common.embedded import free_port
from services.common.events import encode_event
from services.common.ids import new_ids
from services.common.runtime import load_or_create_keys
from services.journey.app import create_app
from services.journey.settings import JourneySettings
from tests.conftest import Servers, unique_name

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    """A real HTTP server publishing the issuer's key set, as an OIDC provider does."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "key-1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
    server.shutdown()


@contextlib.asynccontextmanager
async def _oidc_client(
    journey_settings: JourneySettings, jwks_url: str, servers: Servers, nats_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    # A database and a NATS of its own: on the session's, its relay and consumers would take part
    # in the session app's events.
    url = servers.database_url(unique_name("jg_journey_oidc"))
    await ensure_database(url)
    settings = journey_settings.model_copy(
        update={
            "auth_public_key": None,
            "auth_jwks_url": jwks_url,
            "auth_jwks_timeout_seconds": JWKS_TIMEOUT,
            "auth_issuer": "https://idp.example",
            "database_url": url,
            "nats_url": nats_url,
        }
    )
    app = create_app(settings)
    async with (
        LifespanManager(app, startup_timeout=60),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://oidc") as client,
    ):
        yield client


JWKS_TIMEOUT = 1.0


@pytest.fixture(scope="module")
async def oidc_http(
    journey_settings: JourneySettings, jwks_url: str, servers: Servers, own_nats: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with _oidc_client(journey_settings, jwks_url, servers, own_nats) as client:
        yield client


@pytest.fixture(scope="module")
async def unreachable_issuer_http(
    journey_settings: JourneySettings, servers: Servers, own_nats: str
) -> AsyncIterator[httpx.AsyncClient]:
    """Its JWKS URL names a port nothing listens on."""
    url = f"http://127.0.0.1:{free_port()}/.well-known/jwks.json"
    async with _oidc_client(journey_settings, url, servers, own_nats) as client:
        yield client


@pytest.fixture(scope="module")
async def hanging_issuer_http(
    journey_settings: JourneySettings, servers: Servers, own_nats: str
) -> AsyncIterator[httpx.AsyncClient]:
    """Its JWKS endpoint takes connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/.well-known/jwks.json"
        async with _oidc_client(journey_settings, url, servers, own_nats) as client:
            yield client


def _token(key: rsa.RSAPrivateKey, kid: str) -> str:
    claims = {"iss": "https://idp.example", "aud": "journeygraph", "sub": "user-1", "exp": 4102444800,
              "workspace": "oidc-ws", "scope": "journeys:read"}  # fmt: skip
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


class TestJwks:
    async def test_token_signed_by_the_issuers_key_is_accepted(self, oidc_http: httpx.AsyncClient) -> None:
        response = await oidc_http.get("/v1/journeys", headers={"Authorization": f"Bearer {_token(KEY, 'key-1')}"})
        assert response.status_code == 200, response.text

    async def test_unknown_key_id_is_401(self, oidc_http: httpx.AsyncClient) -> None:
        response = await oidc_http.get("/v1/journeys", headers={"Authorization": f"Bearer {_token(OTHER, 'key-9')}"})
        assert response.status_code == 401
        assert "key-9" in response.json()["detail"]

    async def test_forged_signature_under_a_known_key_id_is_401(self, oidc_http: httpx.AsyncClient) -> None:
        response = await oidc_http.get("/v1/journeys", headers={"Authorization": f"Bearer {_token(OTHER, 'key-1')}"})
        assert response.status_code == 401


class TestIssuerDown:
    async def test_unreachable_jwks_is_503_with_retry_after(self, unreachable_issuer_http: httpx.AsyncClient) -> None:
        for _ in range(2):  # the second within the back-off: answered without trying again
            response = await unreachable_issuer_http.get(
                "/v1/journeys", headers={"Authorization": f"Bearer {_token(KEY, 'key-1')}"}
            )
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert "key set" in response.json()["detail"]
            assert int(response.headers["retry-after"]) >= 1

    async def test_hanging_jwks_is_a_bounded_503(self, hanging_issuer_http: httpx.AsyncClient) -> None:
        headers = {"Authorization": f"Bearer {_token(KEY, 'key-1')}"}

        async def timed() -> tuple[int, float]:
            started = time.monotonic()
            response = await hanging_issuer_http.get("/v1/journeys", headers=headers)
            return response.status_code, time.monotonic() - started

        answers = await asyncio.gather(*(timed() for _ in range(5)))  # queued behind one fetch
        assert [status for status, _ in answers] == [503] * 5
        # JWKS_TIMEOUT (1 s) each, waiting for another request's fetch included; margin for a loaded machine
        assert max(seconds for _, seconds in answers) < 8 * JWKS_TIMEOUT


class TestTokenCommand:
    def test_cli_mints_a_token_the_services_accept(self, tmp_path: Path) -> None:
        _, public = load_or_create_keys(tmp_path)  # as `journeygraph up` does
        out = subprocess.run(
            [sys.executable, "-m", "services.common.cli", "token", "--workspace", "acme", "--scopes",
             "journeys:read,feedback:read", "--home", str(tmp_path)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        claims = jwt.decode(out.stdout.strip(), public, algorithms=["EdDSA"], audience="journeygraph")
        assert (claims["workspace"], claims["scope"]) == ("acme", "journeys:read feedback:read")

    def test_cli_refuses_unknown_scopes(self, tmp_path: Path) -> None:
        out = subprocess.run(
            [sys.executable, "-m", "services.common.cli", "token", "--scopes", "everything", "--home", str(tmp_path)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert out.returncode != 0
        assert "unknown scope" in out.stderr

    async def test_cli_lists_and_replays_a_services_dead_letters(
        self, journey_app: FastAPI, journey_settings: JourneySettings, tmp_path: Path
    ) -> None:
        workspace, event_id, dead_id = unique_name("ws"), new_ids(1)[0], new_ids(1)[0]
        payload = encode_event(
            event_id=event_id, type="journey.probe.parked", workspace_id=workspace, occurred_at=datetime.now(UTC),
            data={"n": 1},
        )  # fmt: skip
        async with journey_app.state.engine.begin() as conn:  # a row the relay gave up on
            await conn.execute(
                sa.text(
                    "INSERT INTO dead_letter (id, consumer, workspace_id, event_id, subject, payload, error, attempts) "
                    "VALUES (:id, 'outbox-relay', :w, :e, 'journey.probe.parked', :p, 'MaxPayloadError()', 5)"
                ),
                {"id": dead_id, "w": workspace, "e": event_id, "p": payload},
            )
        env = {
            **os.environ,
            "JOURNEY_DATABASE_URL": journey_settings.database_url,
            "JOURNEY_NATS_URL": journey_settings.nats_url,
            "JOURNEY_AUTH_PUBLIC_KEY": journey_settings.auth_public_key or "",
            "JOURNEY_LOG_LEVEL": "WARNING",
        }

        async def cli(*args: str) -> str:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.common.cli", "events", *args, "--home", str(tmp_path),
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            return out.decode()

        listed = [json.loads(line) for line in (await cli("dead-letters", "journey", "--workspace", workspace)).split()]
        assert [(d["id"], d["event_id"], d["consumer"]) for d in listed] == [(dead_id, event_id, "outbox-relay")]
        assert "replayed to the outbox" in await cli("replay", "journey", dead_id)
        async with journey_app.state.engine.connect() as conn:
            left = await conn.scalar(sa.text("SELECT count(*) FROM dead_letter WHERE id = :id"), {"id": dead_id})
            pending = await conn.scalar(sa.text("SELECT count(*) FROM outbox_event WHERE id = :id"), {"id": event_id})
        assert (left, pending) == (0, 1)  # back in the outbox, for the relay to publish
