"""Waiting for the journey projections, and reading them whole, for tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI

from services.journey.store.analytics.rollup import CONSUMER
from tests.eventually import eventually

_STATE = sa.text("""
SELECT (SELECT as_of FROM projection_state WHERE consumer = :c AND workspace_id = :w) AS as_of,
       (SELECT count(*) FROM journey_rollup WHERE workspace_id = :w AND (stale_since IS NOT NULL OR signature IS NULL))
       AS due,
       (SELECT count(*) FROM outbox_event WHERE workspace_id = :w AND published_at IS NULL) AS unpublished
""")


async def settled(app: FastAPI, workspace: str, after: datetime, *, within: float = 30.0) -> None:
    """Wait until the projections hold every event of the workspace up to the last write (`after`:
    a time taken before it, so its events occurred later) and no journey is due a rebuild.

    `as_of` passing `after` says that one event of the last write was applied, not all: a write's
    events (its new customers', then its interactions') may arrive in two batches. So the events
    must also all be published and the consumer have none left to deliver or to acknowledge (it
    acknowledges after its commit)."""
    js = app.state.broker.connection.jetstream()

    async def check() -> bool:
        async with app.state.engine.connect() as conn:
            row = (await conn.execute(_STATE, {"c": CONSUMER, "w": workspace})).one()
        if row.as_of is None or row.as_of < after or row.due or row.unpublished:
            return False
        info = await js.consumer_info("JOURNEY", CONSUMER)
        left: int = info.num_pending + info.num_ack_pending
        return left == 0

    try:
        await eventually(check, within=within)
    except AssertionError:
        async with app.state.engine.connect() as conn:
            state = (await conn.execute(_STATE, {"c": CONSUMER, "w": workspace})).one()
            parked = (
                await conn.execute(
                    sa.text("SELECT consumer, error FROM dead_letter WHERE workspace_id = :w"), {"w": workspace}
                )
            ).all()
        raise AssertionError(
            f"not settled after {after}: as_of {state.as_of}, due {state.due}, parked {parked}"
        ) from None


# Every column but the times of building (built_at; stale_since only as "is it stale").
_SNAPSHOTS = {
    "customer_journey": "SELECT * FROM customer_journey WHERE workspace_id = :w ORDER BY journey_id, customer_id",
    "customer_touchpoint": "SELECT * FROM customer_touchpoint WHERE workspace_id = :w "
    "ORDER BY touchpoint_id, customer_id, journey_tag",
    "journey_rollup": "SELECT journey_id, version, signature, stages, stale_since IS NOT NULL AS stale "
    "FROM journey_rollup WHERE workspace_id = :w ORDER BY journey_id",
}


async def snapshot(app: FastAPI, workspace: str) -> dict[str, list[dict[str, Any]]]:
    """The workspace's journey projections, row by row."""
    async with app.state.engine.connect() as conn:
        return {
            table: [dict(r._mapping) for r in await conn.execute(sa.text(sql), {"w": workspace})]
            for table, sql in _SNAPSHOTS.items()
        }


async def quiet(app: FastAPI) -> None:
    """Wait until no background work is left in the service: no event to publish, none to apply
    (every consumer), no journey due a rebuild, in any workspace."""
    js = app.state.broker.connection.jetstream()

    async def check() -> bool:
        async with app.state.engine.connect() as conn:
            busy: int = await conn.scalar(
                sa.text(
                    "SELECT (SELECT count(*) FROM outbox_event WHERE published_at IS NULL) + (SELECT count(*) "
                    "FROM journey_rollup WHERE stale_since IS NOT NULL OR signature IS NULL)"
                )
            )
        for name in app.state.runners:
            info = await js.consumer_info("JOURNEY", name)
            busy += info.num_pending + info.num_ack_pending
        return busy == 0

    await eventually(check, within=60)


async def row_versions(app: FastAPI) -> dict[str, tuple[int, int]]:
    """Per table of the journey database, its row count and the newest row version (xmin): any
    insert, update or delete changes one of them, whoever made it."""
    async with app.state.engine.connect() as conn:
        tables = (
            await conn.execute(sa.text("SELECT relname FROM pg_stat_user_tables WHERE schemaname = 'public'"))
        ).scalars()
        out = {}
        for table in sorted(tables):
            row = (
                await conn.execute(sa.text(f'SELECT count(*), coalesce(max(xmin::text::bigint), 0) FROM "{table}"'))
            ).one()
            out[table] = (row[0], row[1])
        return out
