"""A real HTTP(S) receiver on 127.0.0.1 (uvicorn in the test's event loop) that records requests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
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


@dataclass(frozen=True)
class Tls:
    """A certificate for `hostname` signed by a CA of its own (a client trusts `ca_file` to verify it)."""

    hostname: str
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_tls(folder: Path, hostname: str) -> Tls:
    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def signed(subject: str, key: ec.EllipticCurvePrivateKey, ca: bool) -> x509.CertificateBuilder:
        now = datetime.now(UTC)
        builder = x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name("test CA"))
        builder = builder.public_key(key.public_key()).serial_number(x509.random_serial_number())
        builder = builder.not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
        return builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = signed("test CA", ca_key, True).sign(ca_key, hashes.SHA256())
    leaf = signed(hostname, key, False).add_extension(
        x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False
    )
    tls = Tls(hostname, folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    tls.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    tls.cert_file.write_bytes(leaf.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    tls.key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return tls


@contextlib.asynccontextmanager
async def run_receiver(tls: Tls | None = None) -> AsyncIterator[Receiver]:
    """A receiver on 127.0.0.1; with `tls`, over https at https://HOSTNAME:PORT/hook (the test makes the
    name resolve to 127.0.0.1)."""
    port = free_port()
    url = f"https://{tls.hostname}:{port}/hook" if tls else f"http://127.0.0.1:{port}/hook"
    receiver = Receiver(url=url)

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
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        ssl_certfile=tls.cert_file if tls else None,
        ssl_keyfile=tls.key_file if tls else None,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.02)
    try:
        yield receiver
    finally:
        receiver.stopping.set()
        server.should_exit = True
        await task
