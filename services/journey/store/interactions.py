"""Ingest of interactions and outcomes: validate per item in Python, then write set-based.

One call: validate every item (collecting per-item errors), drop replays within the batch, resolve
touchpoint and journey keys in one query each, create unknown customers in one statement, insert
with `unnest` arrays and `ON CONFLICT (workspace_id, event_id) DO NOTHING RETURNING` — the rows not
returned are replays of earlier batches, acknowledged and never stored twice.

This is the hot path of 10,000-item calls, so items and results stay plain dicts after validation
(no model per row): a pydantic object per row cost more than the insert itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from services.common.db import driver_connection
from services.common.ids import new_ids
from services.journey.models import UNTAGGED, CustomerPublic, InteractionIn, OutcomeIn
from services.journey.store.analytics import rollup
from services.journey.store.customers import assign, ensure_customers, load_personas

CLOCK_SKEW = timedelta(minutes=5)
STORED, DUPLICATE, FAILED = "stored", "duplicate", "failed"

Result = dict[str, Any]  # index, key, status, id, errors: the ItemResult shape


@dataclass
class Ingested:
    results: list[Result]
    stored: list[dict[str, Any]] = field(default_factory=list)  # InteractionPublic / OutcomePublic shape
    # CustomerPublic models, or dicts of that shape (the interaction path builds dicts)
    created_customers: list[CustomerPublic | dict[str, Any]] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        out = {STORED: 0, DUPLICATE: 0, FAILED: 0}
        for r in self.results:
            out[r["status"]] += 1
        return out


@dataclass(frozen=True)
class _Kind:
    table: str
    adapter: TypeAdapter[Any]
    insert: sa.TextClause
    touchpoint_required: bool


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
        {"index": i, "key": None, "status": STORED, "id": None, "errors": None} for i in range(len(raw_items))
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
    channel = ", channel" if table == "touchpoint" else ""
    rows = await session.execute(
        sa.text(f"SELECT key, id{channel} FROM {table} WHERE workspace_id = :w AND key = ANY(:keys)"),
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
        if r["status"] == STORED:
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


def _json(value: dict[str, Any]) -> str | None:
    return orjson.dumps(value).decode() if value else None


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
INTERACTIONS = _Kind("interaction", TypeAdapter(list[InteractionIn]), _INSERT_INTERACTIONS, True)
OUTCOMES = _Kind("outcome", TypeAdapter(list[OutcomeIn]), _INSERT_OUTCOMES, False)


def _row(
    kind: _Kind, item: Any, customer_id: UUID, touchpoints: dict[str, Any], journeys: dict[str, Any]
) -> dict[str, Any]:
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
    }
    if kind is INTERACTIONS:
        row["channel"] = item.channel.value if item.channel else tp.channel  # type: ignore[union-attr]
    else:
        # Decimal as text, as pydantic renders it in JSON (orjson does not encode Decimal)
        row.update(name=item.name, value=None if item.value is None else str(item.value), currency=item.currency)
    return row


def _params(kind: _Kind, workspace_id: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    params = {
        "w": workspace_id,
        "ids": [r["id"] for r in rows],
        "event_ids": [r["event_id"] for r in rows],
        "customer_ids": [r["customer_id"] for r in rows],
        "touchpoint_ids": [r["touchpoint_id"] for r in rows],
        "occurred": [r["occurred_at"] for r in rows],
        "journey_ids": [r["journey_id"] for r in rows],
        "properties": [_json(r["properties"]) for r in rows],
    }
    if kind is INTERACTIONS:
        params["channels"] = [r["channel"] for r in rows]
    else:
        params.update(
            names=[r["name"] for r in rows],
            values=[None if r["value"] is None else Decimal(r["value"]) for r in rows],
            currencies=[r["currency"] for r in rows],
        )
    return params


_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS interaction_stage (
    id uuid, event_id varchar, customer varchar, new_customer_id uuid, touchpoint_id uuid, channel varchar,
    occurred_at timestamptz, journey_id uuid, properties jsonb
) ON COMMIT DELETE ROWS
"""
_STAGING_COLUMNS = [
    "id",
    "event_id",
    "customer",
    "new_customer_id",
    "touchpoint_id",
    "channel",
    "occurred_at",
    "journey_id",
    "properties",
]
# Customers, interactions and the rollup in one statement, so the 10,000 customer ids never travel
# to Python and back. Unknown customers are created (empty profile, the persona matched on it,
# $3/$4) with the id staged for them. A customer created by a concurrent transaction after this
# statement's snapshot is in neither `known` nor `created`: its items are not inserted here and
# the caller sends them again (see _insert_staged). The new customer × touchpoint pairs (reach's
# rollup) are inserted in key order, so concurrent ingests meeting the same pairs wait on each
# other in one order (no deadlock).
_FROM_STAGING = """
WITH known AS (
    SELECT c.id, c.external_id FROM customer c
    WHERE c.workspace_id = $1 AND c.external_id IN (SELECT customer FROM interaction_stage)
), created AS (
    INSERT INTO customer (id, workspace_id, external_id, profile, consents, channel_preferences, existing_customer,
                          persona_id, persona_rule)
    SELECT DISTINCT ON (s.customer) s.new_customer_id, $1, s.customer, '{}', '[]', '[]', false, $3, $4
    FROM interaction_stage s WHERE s.customer NOT IN (SELECT external_id FROM known)
    ORDER BY s.customer
    ON CONFLICT (workspace_id, external_id) DO NOTHING
    RETURNING id, external_id, created_at
), ids AS (
    SELECT id, external_id FROM known UNION ALL SELECT id, external_id FROM created
), ins AS (
    INSERT INTO interaction (id, workspace_id, event_id, customer_id, touchpoint_id, channel, occurred_at,
                             journey_id, properties)
    SELECT s.id, $1, s.event_id, ids.id, s.touchpoint_id, s.channel, s.occurred_at, s.journey_id, s.properties
    FROM interaction_stage s JOIN ids ON ids.external_id = s.customer
    ON CONFLICT (workspace_id, event_id) DO NOTHING
    RETURNING event_id, customer_id, touchpoint_id, journey_id
), met AS (
    INSERT INTO customer_touchpoint (workspace_id, touchpoint_id, customer_id, journey_tag)
    SELECT DISTINCT $1, touchpoint_id, customer_id, COALESCE(journey_id, $2) FROM ins
    ORDER BY 2, 3, 4
    ON CONFLICT DO NOTHING
)
SELECT true AS stored, event_id AS key, customer_id AS id, NULL::timestamptz AS created_at FROM ins
UNION ALL
SELECT false, external_id, id, created_at FROM created
"""


@dataclass(frozen=True, slots=True)
class _Staged:
    stored: dict[str, str]  # event_id -> customer_id of the rows inserted
    created: list[tuple[str, str, datetime]]  # customers created: external_id, id, created_at


async def _insert_staged(
    raw: Any, workspace_id: str, records: list[tuple[Any, ...]], assigned: Any, *, attempts: int = 3
) -> _Staged:
    await raw.copy_records_to_table("interaction_stage", records=records, columns=_STAGING_COLUMNS)
    rows = await raw.fetch(_FROM_STAGING, workspace_id, UNTAGGED, assigned.persona_id, assigned.rule)
    await raw.execute("TRUNCATE interaction_stage")  # a second ingest in this transaction starts empty
    # Ids as text: asyncpg's own UUID type is not the uuid.UUID orjson (events) encodes.
    out = _Staged(
        {r["key"]: str(r["id"]) for r in rows if r["stored"]},
        [(r["key"], str(r["id"]), r["created_at"]) for r in rows if not r["stored"]],
    )
    missing = [rec for rec in records if rec[1] not in out.stored]
    if missing:
        # Not inserted: a replay (the row exists) or a customer created concurrently after the
        # statement's snapshot. The latter are visible to a new statement: send them again.
        existing = {
            r["event_id"]
            for r in await raw.fetch(
                "SELECT event_id FROM interaction WHERE workspace_id = $1 AND event_id = ANY($2::text[])",
                workspace_id,
                [rec[1] for rec in missing],
            )
        }
        retry = [rec for rec in missing if rec[1] not in existing]
        if retry:
            if attempts <= 1:
                raise RuntimeError(f"{len(retry)} interactions found no customer after repeated attempts")
            again = await _insert_staged(raw, workspace_id, retry, assigned, attempts=attempts - 1)
            out.stored.update(again.stored)
            out.created.extend(again.created)
    return out


async def _copy_interactions(
    session: AsyncSession,
    workspace_id: str,
    valid: dict[int, Any],
    touchpoints: dict[str, Any],
    journeys: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[CustomerPublic | dict[str, Any]]]:
    """COPY the items into a per-connection temp table, then one statement creates the unknown
    customers, inserts the interactions (ON CONFLICT DO NOTHING: replays are not inserted) and
    records the new customer × touchpoint pairs. Returns the stored rows (InteractionPublic shape)
    and the created customers (CustomerPublic shape).

    The temp table lives as long as the pooled connection and is emptied at every commit; it
    runs on the session's connection, inside the request transaction.
    """
    personas = await load_personas(session, workspace_id=workspace_id)
    assigned = assign(personas, {})
    raw = await driver_connection(session)
    await raw.execute(_STAGING)
    # A new id per distinct customer, used if the customer is unknown.
    customers = dict.fromkeys(item.customer for item in valid.values())
    customer_ids = dict(zip(customers, new_ids(len(customers)), strict=True))
    records: list[tuple[Any, ...]] = []
    for item, id_ in zip(valid.values(), new_ids(len(valid)), strict=True):
        tp = touchpoints[item.touchpoint]
        journey = journeys[item.journey].id if item.journey else None
        records.append((
            id_, item.event_id, item.customer, customer_ids[item.customer], tp.id,
            item.channel.value if item.channel else tp.channel, item.occurred_at, journey, _json(item.properties),
        ))  # fmt: skip
    staged = await _insert_staged(raw, workspace_id, records, assigned)
    stored: list[dict[str, Any]] = []
    for (id_, event_id, customer, _, tp_id, channel, occurred_at, journey_id, _), item in zip(
        records, valid.values(), strict=True
    ):
        customer_id = staged.stored.get(event_id)
        if customer_id is not None:
            stored.append({
                "id": id_, "event_id": event_id, "customer": customer, "customer_id": customer_id,
                "touchpoint": item.touchpoint, "touchpoint_id": tp_id, "occurred_at": occurred_at,
                "journey": item.journey, "journey_id": journey_id, "properties": item.properties, "channel": channel,
            })  # fmt: skip
    created: list[CustomerPublic | dict[str, Any]] = [
        {
            "id": id_,
            "external_id": external_id,
            "profile": {},
            "consents": [],
            "channel_preferences": [],
            "existing_customer": False,
            "persona_id": assigned.persona_id,
            "persona_key": assigned.persona_key,
            "persona_rule": assigned.rule,
            "created_at": created_at,
            "updated_at": created_at,
        }
        for external_id, id_, created_at in staged.created
    ]
    return stored, created


async def _record(
    kind: _Kind, session: AsyncSession, *, workspace_id: str, items: Sequence[Any], now: datetime | None
) -> Ingested:
    results, valid = _validate(kind.adapter, items, now or datetime.now(UTC))
    touchpoints, journeys = await _resolve(session, workspace_id, results, valid)
    out = Ingested(results)
    stored_ids: dict[str, UUID] = {}
    if valid:
        if kind is INTERACTIONS:
            out.stored, out.created_customers = await _copy_interactions(
                session, workspace_id, valid, touchpoints, journeys
            )
            touched: dict[UUID, set[UUID]] = {}
            for r in out.stored:
                touched.setdefault(r["touchpoint_id"], set()).add(r["customer_id"])
            await rollup.refresh_customers(session, workspace_id=workspace_id, touched=touched)
        else:
            customer_ids, created = await ensure_customers(
                session, workspace_id=workspace_id, external_ids=[v.customer for v in valid.values()]
            )
            out.created_customers = list(created)
            rows = [_row(kind, v, customer_ids[v.customer], touchpoints, journeys) for v in valid.values()]
            inserted = {r.event_id for r in await session.execute(kind.insert, _params(kind, workspace_id, rows))}
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
