"""Checks every service must pass, written once: migrations match the models, and schemathesis
finds no 5xx, no undocumented status and no response outside the schema over real HTTP."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import create_engine, ensure_database
from services.common.migrations import alembic_config

ROOT = Path(__file__).resolve().parents[1]


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


def schemathesis_run(base_url: str, token: str, *, max_examples: int, report_dir: Path) -> tuple[int, str]:
    """Run the schemathesis CLI against the service's OpenAPI, as an outside prober would: every check,
    positive and negative generation, every phase (examples, coverage, fuzzing, stateful), bounded by
    `max_examples` per operation. Returns its exit code and its output (the failures, reproducible
    with the printed curl commands).

    The CLI is driven, as outside probing drives it: one engine runs every phase and every check (all
    are on unless tests/schemathesis.toml says otherwise for an operation, with its reason). A fixed
    seed keeps the suite's run repeatable; one worker, because CPython 3.11's parser is not
    thread-safe under hypothesis' lambda descriptions ("AST constructor recursion depth mismatch")."""
    command = [
        str(Path(sys.executable).with_name("st")), "--config-file", str(ROOT / "tests" / "schemathesis.toml"),
        "run", f"{base_url}/openapi.json",
        "--mode", "all", "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", str(max_examples), "--seed", "20261202", "--workers", "1",
        "--header", f"Authorization: Bearer {token}", "--request-timeout", "30",
        "--report", "junit", "--report-dir", str(report_dir), "--no-color", "--output-truncate", "true",
    ]  # fmt: skip
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, env=env, cwd=report_dir)
    output = done.stdout + done.stderr
    (report_dir / "schemathesis.txt").write_text(output)
    return done.returncode, output
