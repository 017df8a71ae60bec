"""Ingest of interactions and outcomes: validate per item in Python, then write set-based.

One call: validate every item (collecting per-item errors), drop replays within the batch, resolve
touchpoint and journey keys in one query each, create unknown customers in one statement, insert
with `unnest` arrays and `ON CONFLICT (workspace_id, event_id) DO NOTHING RETURNING` — the rows not
returned are replays of earlier batches, acknowledged and never stored twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar
from uuid import UUID

import orjson
import sqlalchemy as sa
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from services.journey.models import (
    CustomerPublic,
    InteractionIn,
    InteractionPublic,
    ItemError,
    ItemResult,
    ItemStatus,
    OutcomeIn,
    OutcomePublic,
)
from services.journey.store.customers import ensure_customers

CLOCK_SKEW = timedelta(minutes=5)
ItemT = TypeVar("ItemT", InteractionIn, OutcomeIn)
PublicT = TypeVar("PublicT", InteractionPublic, OutcomePublic)


@dataclass
class Ingested(Generic[PublicT]):
    results: list[ItemResult]
    stored: list[PublicT] = field(default_factory=list)
    created_customers: list[CustomerPublic] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in (ItemStatus.stored, ItemStatus.duplicate, ItemStatus.failed)}
        for r in self.results:
            out[r.status.value] += 1
        return out


def _errors(exc: ValidationError) -> list[ItemError]:
    return [ItemError(field=".".join(str(p) for p in e["loc"]) or "item", message=e["msg"]) for e in exc.errors()]


def _key_of(raw: Any) -> str | None:
    if isinstance(raw, BaseModel):
        raw = raw.model_dump()
    value = raw.get("event_id") if isinstance(raw, dict) else None
    return value[:200] if isinstance(value, str) else None


def _validate(
    adapter: TypeAdapter[ItemT], raw_items: Sequence[Any], now: datetime
) -> tuple[list[ItemResult], dict[int, ItemT]]:
    """Per-item validation; replays within the batch are marked duplicate of their first item."""
    results: list[ItemResult] = []
    valid: dict[int, ItemT] = {}
    first_of: dict[str, int] = {}
    latest = now + CLOCK_SKEW
    for index, raw in enumerate(raw_items):
        try:
            item = raw if isinstance(raw, InteractionIn | OutcomeIn) else adapter.validate_python(raw)
        except ValidationError as exc:
            results.append(ItemResult(index=index, key=_key_of(raw), status=ItemStatus.failed, errors=_errors(exc)))
            continue
        result = ItemResult(index=index, key=item.event_id, status=ItemStatus.stored)
        results.append(result)
        if item.occurred_at > latest:
            result.status = ItemStatus.failed
            result.errors = [
                ItemError(
                    field="occurred_at",
                    message=f"is in the future beyond the allowed clock skew of {int(CLOCK_SKEW.total_seconds())} s",
                )
            ]
        elif item.event_id in first_of:
            result.status = ItemStatus.duplicate
        else:
            first_of[item.event_id] = index
            valid[index] = item  # type: ignore[assignment]
    return results, valid


async def _keys(session: AsyncSession, table: str, workspace_id: str, keys: set[str]) -> dict[str, Any]:
    if not keys:
        return {}
    rows = await session.execute(
        sa.text(
            f"SELECT key, id{', channel' if table == 'touchpoint' else ''} FROM {table} "
            "WHERE workspace_id = :w AND key = ANY(:keys)"
        ),
        {"w": workspace_id, "keys": sorted(keys)},
    )
    return {r.key: r for r in rows}


def _fail(result: ItemResult, field_name: str, message: str) -> None:
    result.status = ItemStatus.failed
    result.errors = [*(result.errors or []), ItemError(field=field_name, message=message)]


async def _resolve(
    session: AsyncSession, workspace_id: str, results: list[ItemResult], valid: dict[int, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Touchpoint and journey keys in one query each; items naming unknown keys fail."""
    touchpoints = await _keys(
        session, "touchpoint", workspace_id, {v.touchpoint for v in valid.values() if v.touchpoint}
    )
    journeys = await _keys(session, "journey", workspace_id, {v.journey for v in valid.values() if v.journey})
    for index in list(valid):
        item = valid[index]
        if item.touchpoint and item.touchpoint not in touchpoints:
            _fail(results[index], "touchpoint", f"no touchpoint with key {item.touchpoint!r} in this workspace")
        if item.journey and item.journey not in journeys:
            _fail(results[index], "journey", f"no journey with key {item.journey!r} in this workspace")
        if results[index].status == ItemStatus.failed:
            del valid[index]
    return touchpoints, journeys


async def _link_duplicates(
    session: AsyncSession, table: str, workspace_id: str, results: list[ItemResult], stored_ids: dict[str, UUID]
) -> None:
    """Duplicates carry the id of the row stored for their event id (this batch or an earlier one)."""
    wanted = {r.key for r in results if r.status == ItemStatus.duplicate and r.key and r.key not in stored_ids}
    if wanted:
        rows = await session.execute(
            sa.text(f"SELECT event_id, id FROM {table} WHERE workspace_id = :w AND event_id = ANY(:e)"),
            {"w": workspace_id, "e": sorted(wanted)},
        )
        stored_ids = {**stored_ids, **{r.event_id: r.id for r in rows}}
    for r in results:
        if r.status == ItemStatus.duplicate and r.key in stored_ids:
            r.id = stored_ids[r.key]


_INSERT_INTERACTIONS = sa.text("""
INSERT INTO interaction (id, workspace_id, event_id, customer_id, touchpoint_id, channel, occurred_at,
                         journey_id, properties)
SELECT u.id, :w, u.event_id, u.customer_id, u.touchpoint_id, u.channel, u.occurred_at, u.journey_id,
       u.properties::jsonb
FROM unnest(CAST(:ids AS uuid[]), CAST(:event_ids AS text[]), CAST(:customer_ids AS uuid[]),
            CAST(:touchpoint_ids AS uuid[]), CAST(:channels AS text[]), CAST(:occurred AS timestamptz[]),
            CAST(:journey_ids AS uuid[]), CAST(:properties AS text[]))
     AS u(id, event_id, customer_id, touchpoint_id, channel, occurred_at, journey_id, properties)
ON CONFLICT (workspace_id, event_id) DO NOTHING
RETURNING id, event_id
""")


async def record_interactions(
    session: AsyncSession, *, workspace_id: str, items: Sequence[Any], now: datetime | None = None
) -> Ingested[InteractionPublic]:
    now = now or datetime.now(UTC)
    results, valid = _validate(TypeAdapter(InteractionIn), items, now)
    touchpoints, journeys = await _resolve(session, workspace_id, results, valid)
    out = Ingested[InteractionPublic](results)
    if not valid:
        await _link_duplicates(session, "interaction", workspace_id, results, {})
        return out
    customer_ids, out.created_customers = await ensure_customers(
        session, workspace_id=workspace_id, external_ids=[v.customer for v in valid.values()]
    )
    rows: dict[str, InteractionPublic] = {}
    for item in valid.values():
        tp = touchpoints[item.touchpoint]
        journey = journeys.get(item.journey) if item.journey else None
        rows[item.event_id] = InteractionPublic(
            id=uuid7(),
            event_id=item.event_id,
            customer=item.customer,
            customer_id=customer_ids[item.customer],
            touchpoint=item.touchpoint,
            touchpoint_id=tp.id,
            channel=item.channel or tp.channel,
            occurred_at=item.occurred_at,
            journey=item.journey,
            journey_id=journey.id if journey else None,
            properties=item.properties,
        )
    values = list(rows.values())
    inserted = await session.execute(
        _INSERT_INTERACTIONS,
        {
            "w": workspace_id,
            "ids": [v.id for v in values],
            "event_ids": [v.event_id for v in values],
            "customer_ids": [v.customer_id for v in values],
            "touchpoint_ids": [v.touchpoint_id for v in values],
            "channels": [v.channel.value for v in values],
            "occurred": [v.occurred_at for v in values],
            "journey_ids": [v.journey_id for v in values],
            "properties": [orjson.dumps(v.properties).decode() if v.properties else None for v in values],
        },
    )
    stored_ids = {r.event_id: r.id for r in inserted}
    _settle(results, stored_ids)
    await _link_duplicates(session, "interaction", workspace_id, results, stored_ids)
    out.stored = [v for v in values if v.event_id in stored_ids]
    return out


def _settle(results: list[ItemResult], stored_ids: dict[str, UUID]) -> None:
    for r in results:
        if r.status == ItemStatus.stored:
            if r.key in stored_ids:
                r.id = stored_ids[r.key]
            else:  # stored by an earlier batch: a replay
                r.status = ItemStatus.duplicate


_INSERT_OUTCOMES = sa.text("""
INSERT INTO outcome (id, workspace_id, event_id, customer_id, name, value, currency, touchpoint_id,
                     occurred_at, journey_id, properties)
SELECT u.id, :w, u.event_id, u.customer_id, u.name, u.value, u.currency, u.touchpoint_id, u.occurred_at,
       u.journey_id, u.properties::jsonb
FROM unnest(CAST(:ids AS uuid[]), CAST(:event_ids AS text[]), CAST(:customer_ids AS uuid[]),
            CAST(:names AS text[]), CAST(:values AS numeric[]), CAST(:currencies AS text[]),
            CAST(:touchpoint_ids AS uuid[]), CAST(:occurred AS timestamptz[]), CAST(:journey_ids AS uuid[]),
            CAST(:properties AS text[]))
     AS u(id, event_id, customer_id, name, value, currency, touchpoint_id, occurred_at, journey_id, properties)
ON CONFLICT (workspace_id, event_id) DO NOTHING
RETURNING id, event_id
""")


async def record_outcomes(
    session: AsyncSession, *, workspace_id: str, items: Sequence[Any], now: datetime | None = None
) -> Ingested[OutcomePublic]:
    now = now or datetime.now(UTC)
    results, valid = _validate(TypeAdapter(OutcomeIn), items, now)
    touchpoints, journeys = await _resolve(session, workspace_id, results, valid)
    out = Ingested[OutcomePublic](results)
    if not valid:
        await _link_duplicates(session, "outcome", workspace_id, results, {})
        return out
    customer_ids, out.created_customers = await ensure_customers(
        session, workspace_id=workspace_id, external_ids=[v.customer for v in valid.values()]
    )
    values: list[OutcomePublic] = []
    for item in valid.values():
        tp = touchpoints.get(item.touchpoint) if item.touchpoint else None
        journey = journeys.get(item.journey) if item.journey else None
        values.append(
            OutcomePublic(
                id=uuid7(),
                event_id=item.event_id,
                customer=item.customer,
                customer_id=customer_ids[item.customer],
                name=item.name,
                value=item.value,
                currency=item.currency,
                touchpoint=item.touchpoint,
                touchpoint_id=tp.id if tp else None,
                occurred_at=item.occurred_at,
                journey=item.journey,
                journey_id=journey.id if journey else None,
                properties=item.properties,
            )
        )
    inserted = await session.execute(
        _INSERT_OUTCOMES,
        {
            "w": workspace_id,
            "ids": [v.id for v in values],
            "event_ids": [v.event_id for v in values],
            "customer_ids": [v.customer_id for v in values],
            "names": [v.name for v in values],
            "values": [v.value for v in values],
            "currencies": [v.currency for v in values],
            "touchpoint_ids": [v.touchpoint_id for v in values],
            "occurred": [v.occurred_at for v in values],
            "journey_ids": [v.journey_id for v in values],
            "properties": [orjson.dumps(v.properties).decode() if v.properties else None for v in values],
        },
    )
    stored_ids = {r.event_id: r.id for r in inserted}
    _settle(results, stored_ids)
    await _link_duplicates(session, "outcome", workspace_id, results, stored_ids)
    out.stored = [v for v in values if v.event_id in stored_ids]
    return out
