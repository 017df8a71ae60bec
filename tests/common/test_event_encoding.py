"""Event payloads encode what the stores hand them: asyncpg UUIDs and Decimal money included."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import orjson
import pytest
from uuid_utils.compat import uuid7

from services.common.db import asyncpg_dsn
from services.common.events import decode_event, encode_event
from tests.conftest import Servers


async def test_asyncpg_uuid_and_decimal_round_trip(servers: Servers) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(servers.database_url("postgres")))
    try:
        raw_uuid = await conn.fetchval("SELECT '8f9c0b0e-7a5e-4d8e-9d3c-2b1a0f9e8d7c'::uuid")
    finally:
        await conn.close()
    event_id = uuid7()
    payload = encode_event(
        event_id=event_id, type="journey.x.happened", workspace_id="w", occurred_at=datetime.now(UTC),
        data={"customer_id": raw_uuid, "value": Decimal("19.90")},
    )  # fmt: skip
    event = decode_event(payload)
    assert event.id == event_id
    assert event.data == {"customer_id": "8f9c0b0e-7a5e-4d8e-9d3c-2b1a0f9e8d7c", "value": "19.90"}


def test_unknown_types_are_refused() -> None:
    with pytest.raises(orjson.JSONEncodeError):
        encode_event(event_id=uuid7(), type="t", workspace_id="w", occurred_at=datetime.now(UTC), data={"x": object()})
