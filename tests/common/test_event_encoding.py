"""Event payloads: what the stores hand them encodes (asyncpg UUIDs, Decimal money), the envelope
names the aggregate and its version, and nothing goes out over the byte budget."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import orjson
import pytest
from uuid_utils.compat import uuid7

from services.common.db import asyncpg_dsn
from services.common.events import MAX_EVENT_BYTES, EventTooLarge, decode_event, encode_event, item_batches
from services.common.outbox import batch_changes
from tests.conftest import Servers


async def test_asyncpg_uuid_and_decimal_round_trip(servers: Servers) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(servers.database_url("postgres")))
    try:
        raw_uuid = await conn.fetchval("SELECT '8f9c0b0e-7a5e-4d8e-9d3c-2b1a0f9e8d7c'::uuid")
    finally:
        await conn.close()
    event_id, aggregate_id = uuid7(), uuid7()
    payload = encode_event(
        event_id=event_id, type="journey.x.happened", workspace_id="w", occurred_at=datetime.now(UTC),
        data={"customer_id": raw_uuid, "value": Decimal("19.90")}, aggregate_id=aggregate_id, version=3,
    )  # fmt: skip
    event = decode_event(payload)
    assert (event.id, event.aggregate_id, event.version) == (event_id, str(aggregate_id), 3)
    assert event.data == {"customer_id": "8f9c0b0e-7a5e-4d8e-9d3c-2b1a0f9e8d7c", "value": "19.90"}
    assert orjson.loads(payload)["occurred_at"].endswith("Z")


def test_unknown_types_are_refused() -> None:
    with pytest.raises(TypeError):
        encode_event(event_id=uuid7(), type="t", workspace_id="w", occurred_at=datetime.now(UTC), data={"x": object()})


def test_an_event_over_the_budget_is_refused() -> None:
    with pytest.raises(EventTooLarge, match="over the budget"):
        encode_event(
            event_id=uuid7(),
            type="t",
            workspace_id="w",
            occurred_at=datetime.now(UTC),
            data={"x": "y" * MAX_EVENT_BYTES},
        )


def test_batches_split_by_size_keep_every_item_once_in_order() -> None:
    items = [{"id": n, "properties": {"note": "x" * (n % 7) * 1000}} for n in range(600)]
    changes = batch_changes("journey.interaction.recorded", items)
    assert len(changes) > 1
    seen = []
    for change in changes:
        payload = encode_event(
            event_id=uuid7(), type=change.type, workspace_id="w", occurred_at=datetime.now(UTC), data=change.data
        )
        assert len(payload) <= MAX_EVENT_BYTES
        event = decode_event(payload)
        assert (event.aggregate_id, event.version) == (None, None)
        seen += [item["id"] for item in event.data["items"]]
    assert seen == list(range(600))


def test_an_item_alone_over_the_budget_is_refused() -> None:
    with pytest.raises(EventTooLarge, match="one item"):
        list(item_batches([{"id": 1}, {"id": 2, "blob": "z" * MAX_EVENT_BYTES}]))
