"""Ingest of interactions and outcomes: validate per item in Python, then write set-based.

One call: validate every item (collecting per-item errors), drop replays within the batch, resolve
touchpoint and journey keys in one query each, then write — interactions through a staging COPY
and one statement that also creates unknown customers (staging.py), outcomes with `unnest` arrays.
Only facts are written: what is derived from interactions is built from their events.
Both insert `ON CONFLICT (workspace_id, event_id) DO NOTHING`: the rows not inserted are replays of
earlier batches, acknowledged and never stored twice.

This is the hot path of 10,000-item calls, so items and results stay plain dicts after validation
(no model per row): a pydantic object per row cost more than the insert itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from services.common.bulk import ItemStatus
from services.journey.models import CustomerPublic, InteractionIn, OutcomeIn
from services.journey.store.customers import ensure_customers
from services.journey.store.staging import copy_interactions, json_text

CLOCK_SKEW = timedelta(minutes=5)
# Plain strings on the hot path; the values of the kit's ItemStatus.
CREATED, DUPLICATE, FAILED = ItemStatus.created.value, ItemStatus.duplicate.value, ItemStatus.failed.value

Result = dict[str, Any]  # index, key, status, id, errors: the kit's ItemResult shape


def status_counts(statuses: Iterable[str]) -> dict[str, int]:
    """Items per status, every status present (the kit's BulkResult.counts)."""
    out = {s.value: 0 for s in ItemStatus}
    for status in statuses:
        out[status] += 1
    return out


@dataclass
class Ingested:
    results: list[Result]
    stored: list[dict[str, Any]] = field(default_factory=list)  # InteractionPublic / OutcomePublic shape
    # CustomerPublic models, or dicts of that shape (the interaction path builds dicts)
    created_customers: list[CustomerPublic | dict[str, Any]] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return status_counts(r["status"] for r in self.results)


@dataclass(frozen=True)
class _Kind:
    table: str
    adapter: TypeAdapter[Any]


@dataclass(frozen=True, slots=True)
class _Ref:
    id: UUID
    channel: str | None


def _key_of(raw: Any) -> str | None:
    value = raw.get("event_id") if isinstance(raw, dict) else getattr(raw, "event_id", None)
    return value[:200] if isinstance(value, str) else None


def _error(field_name: str, message: str) -> dict[str, str]:
    return {"field": field_name, "message": message}


def _validate(
    adapter: TypeAdapter[Any], raw_items: Sequence[Any], now: datetime
) -> tuple[list[Result], dict[int, Any]]:
    """Validate the whole list at once (one call into pydantic-core); on errors, validate the rest again.

    Returns a result per item and the valid items by index; replays within the batch are
    duplicates of their first item.
    """
    # The key of a valid item comes from its model; only a failed one is read from the raw item.
    results: list[Result] = [
        {"index": i, "key": None, "status": CREATED, "id": None, "errors": None} for i in range(len(raw_items))
    ]
    good = list(range(len(raw_items)))
    try:
        models = adapter.validate_python(list(raw_items))
    except ValidationError as exc:
        for e in exc.errors():
            loc = e["loc"]
            r = results[int(loc[0])]
            r["status"], r["key"] = FAILED, _key_of(raw_items[int(loc[0])])
            r["errors"] = [*(r["errors"] or []), _error(".".join(str(p) for p in loc[1:]) or "item", e["msg"])]
        good = [i for i in good if results[i]["status"] != FAILED]
        models = adapter.validate_python([raw_items[i] for i in good])
    valid: dict[int, Any] = {}
    first_of: set[str] = set()
    latest = now + CLOCK_SKEW
    for index, item in zip(good, models, strict=True):
        r = results[index]
        r["key"] = item.event_id
        if item.occurred_at > latest:
            r["status"] = FAILED
            skew = int(CLOCK_SKEW.total_seconds())
            r["errors"] = [_error("occurred_at", f"is in the future beyond the allowed clock skew of {skew} s")]
        elif item.event_id in first_of:
            r["status"] = DUPLICATE
        else:
            first_of.add(item.event_id)
            valid[index] = item
    return results, valid


async def _keys(session: AsyncSession, table: str, workspace_id: str, keys: set[str]) -> dict[str, Any]:
    if not keys:
        return {}
    # Touchpoints are held FOR KEY SHARE until commit: a concurrent delete of one waits, then finds
    # the interactions stored here and is refused (catalogue.delete_touchpoint), or deleted it first.
    channel, lock = (", channel", " FOR KEY SHARE") if table == "touchpoint" else ("", "")
    rows = await session.execute(
        sa.text(f"SELECT key, id{channel} FROM {table} WHERE workspace_id = :w AND key = ANY(:keys){lock}"),
        {"w": workspace_id, "keys": sorted(keys)},
    )
    # plain uuid.UUID ids: asyncpg's own UUID type is not one, and orjson (events) encodes only uuid.UUID
    return {r.key: _Ref(UUID(bytes=r.id.bytes), getattr(r, "channel", None)) for r in rows}


async def _resolve(
    session: AsyncSession, workspace_id: str, results: list[Result], valid: dict[int, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Touchpoint and journey keys in one query each; items naming unknown keys fail."""
    wanted_touchpoints = {v.touchpoint for v in valid.values() if v.touchpoint}
    wanted_journeys = {v.journey for v in valid.values() if v.journey}
    touchpoints = await _keys(session, "touchpoint", workspace_id, wanted_touchpoints)
    journeys = await _keys(session, "journey", workspace_id, wanted_journeys)
    if wanted_touchpoints <= touchpoints.keys() and wanted_journeys <= journeys.keys():
        return touchpoints, journeys  # every key known: no item to fail
    for index in list(valid):
        item, r = valid[index], results[index]
        errors = []
        if item.touchpoint and item.touchpoint not in touchpoints:
            errors.append(_error("touchpoint", f"no touchpoint with key {item.touchpoint!r} in this workspace"))
        if item.journey and item.journey not in journeys:
            errors.append(_error("journey", f"no journey with key {item.journey!r} in this workspace"))
        if errors:
            r["status"], r["errors"] = FAILED, errors
            del valid[index]
    return touchpoints, journeys


async def _settle(
    session: AsyncSession, table: str, workspace_id: str, results: list[Result], stored: dict[str, UUID]
) -> None:
    """Stored items get their id; items not inserted were replays of an earlier batch; duplicates
    carry the id of the row stored for their event id (in this batch or an earlier one)."""
    for r in results:
        if r["status"] == CREATED:
            if r["key"] in stored:
                r["id"] = stored[r["key"]]
            else:
                r["status"] = DUPLICATE
    wanted = {r["key"] for r in results if r["status"] == DUPLICATE and r["key"] not in stored}
    if wanted:
        rows = await session.execute(
            sa.text(f"SELECT event_id, id FROM {table} WHERE workspace_id = :w AND event_id = ANY(:e)"),
            {"w": workspace_id, "e": sorted(wanted)},
        )
        stored = {**stored, **{row.event_id: UUID(bytes=row.id.bytes) for row in rows}}
    for r in results:
        if r["status"] == DUPLICATE:
            r["id"] = stored.get(r["key"])


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
INTERACTIONS = _Kind("interaction", TypeAdapter(list[InteractionIn]))
OUTCOMES = _Kind("outcome", TypeAdapter(list[OutcomeIn]))


def _outcome_row(item: Any, customer_id: UUID, touchpoints: dict[str, Any], journeys: dict[str, Any]) -> dict[str, Any]:
    tp = touchpoints.get(item.touchpoint) if item.touchpoint else None
    journey = journeys.get(item.journey) if item.journey else None
    row = {
        "id": uuid7(),
        "event_id": item.event_id,
        "customer": item.customer,
        "customer_id": customer_id,
        "touchpoint": item.touchpoint,
        "touchpoint_id": tp.id if tp else None,
        "occurred_at": item.occurred_at,
        "journey": item.journey,
        "journey_id": journey.id if journey else None,
        "properties": item.properties,
        "name": item.name,
        # Decimal as text, as pydantic renders it in JSON (orjson does not encode Decimal)
        "value": None if item.value is None else str(item.value),
        "currency": item.currency,
    }
    return row


def _outcome_params(workspace_id: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "w": workspace_id,
        "ids": [r["id"] for r in rows],
        "event_ids": [r["event_id"] for r in rows],
        "customer_ids": [r["customer_id"] for r in rows],
        "touchpoint_ids": [r["touchpoint_id"] for r in rows],
        "occurred": [r["occurred_at"] for r in rows],
        "journey_ids": [r["journey_id"] for r in rows],
        "properties": [json_text(r["properties"]) for r in rows],
        "names": [r["name"] for r in rows],
        "values": [None if r["value"] is None else Decimal(r["value"]) for r in rows],
        "currencies": [r["currency"] for r in rows],
    }


async def _record(
    kind: _Kind, session: AsyncSession, *, workspace_id: str, items: Sequence[Any], now: datetime | None
) -> Ingested:
    results, valid = _validate(kind.adapter, items, now or datetime.now(UTC))
    touchpoints, journeys = await _resolve(session, workspace_id, results, valid)
    out = Ingested(results)
    stored_ids: dict[str, UUID] = {}
    if valid:
        if kind is INTERACTIONS:
            out.stored, out.created_customers = await copy_interactions(
                session, workspace_id, valid, touchpoints, journeys
            )
        else:
            customer_ids, created = await ensure_customers(
                session, workspace_id=workspace_id, external_ids=[v.customer for v in valid.values()]
            )
            out.created_customers = list(created)
            rows = [_outcome_row(v, customer_ids[v.customer], touchpoints, journeys) for v in valid.values()]
            inserted = {
                r.event_id for r in await session.execute(_INSERT_OUTCOMES, _outcome_params(workspace_id, rows))
            }
            out.stored = [r for r in rows if r["event_id"] in inserted]
        stored_ids = {r["event_id"]: r["id"] for r in out.stored}
    await _settle(session, kind.table, workspace_id, results, stored_ids)
    return out


async def record_interactions(
    session: AsyncSession, *, workspace_id: str, items: Sequence[Any], now: datetime | None = None
) -> Ingested:
    return await _record(INTERACTIONS, session, workspace_id=workspace_id, items=items, now=now)


async def record_outcomes(
    session: AsyncSession, *, workspace_id: str, items: Sequence[Any], now: datetime | None = None
) -> Ingested:
    return await _record(OUTCOMES, session, workspace_id=workspace_id, items=items, now=now)
