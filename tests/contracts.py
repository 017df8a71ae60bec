"""Checks every service must pass, written once: migrations match the models, and schemathesis
finds no 5xx and no undocumented response over real HTTP."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import schemathesis
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import create_engine, ensure_database
from services.common.migrations import alembic_config


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    """Import endpoints take NDJSON: a generated list becomes one JSON document per line."""
    items = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


@schemathesis.serializer("text/csv")
def _csv(ctx: Any, value: Any) -> bytes:
    return (
        value.encode() if isinstance(value, str) else value if isinstance(value, bytes) else json.dumps(value).encode()
    )


async def migration_drift(engine: AsyncEngine, metadata: sa.MetaData) -> list[Any]:
    """What autogenerate would still change: empty when the history creates exactly the models."""

    def diff(connection: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with engine.connect() as conn:
        return await conn.run_sync(diff)


async def round_trip_history(database_url: str, service_dir: Path, metadata: sa.MetaData) -> list[Any]:
    """Upgrade to head, downgrade to base, upgrade again; return the drift left afterwards."""
    await ensure_database(database_url)
    cfg = alembic_config(service_dir, database_url)
    for step, target in ((command.upgrade, "head"), (command.downgrade, "base"), (command.upgrade, "head")):
        await asyncio.to_thread(step, cfg, target)
    engine = create_engine(database_url)
    try:
        return await migration_drift(engine, metadata)
    finally:
        await engine.dispose()


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    for sub in getattr(exc, "exceptions", ()):  # hypothesis' Flaky and FailureGroup nest the real failures
        text += "\n  - " + _describe(sub).replace("\n", "\n    ")
    return text


def schemathesis_failures(base_url: str, headers: dict[str, str], *, max_examples: int) -> tuple[int, dict[str, str]]:
    """Run every operation of the service's OpenAPI; return (operations, failures by operation).

    schemathesis' pytest loader (`from_fixture`) breaks on pytest 9 ("'Function' object has no
    attribute '_nodeid'"), so operations are driven through its Python API with hypothesis."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: dict[str, str] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid schema raises here
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
            case.call_and_validate(
                headers=headers,
                checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                        response_schema_conformance],
            )  # fmt: skip

        try:
            check()
        except Exception as exc:
            failures[operation.label] = _describe(exc)[:3000]
    return operations, failures
