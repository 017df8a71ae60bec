"""The interaction ingest's write: COPY into a per-connection staging table, then one statement
creates the unknown customers and inserts the interactions. Nothing derived is written here: the
customer × touchpoint pairs and the funnel/paths rows are projections of the events.

Split from `interactions.py` (validation, key resolution, per-item results, outcomes), which calls
`copy_interactions` with the valid items.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.db import driver_connection
from services.common.ids import new_ids
from services.journey.models import CustomerPublic
from services.journey.store.customers import assign, load_personas


def json_text(value: dict[str, Any]) -> str | None:
    """A properties object as the JSON text the statements cast to jsonb (None when empty)."""
    return orjson.dumps(value).decode() if value else None


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
# Customers and interactions in one statement, so the 10,000 customer ids never travel to Python
# and back. Known customers: one probe of uq_customer_external_id per staged customer
# (LATERAL, OFFSET 0 keeps it so). For a workspace the statistics do not know yet (a new tenant,
# before autovacuum's next ANALYZE: estimated at one customer) a free join scanned all of the
# workspace's customers once per staged row (docs/engineering-notes.md, "multi-tenant planner
# trap"; see also migration 0009). Unknown customers are created (empty profile, the
# persona matched on it, $2/$3; version 1) with the id staged for them. A customer created by a
# concurrent transaction after this statement's snapshot is in neither `known` nor `created`: its
# items are not inserted here and the caller sends them again (see _insert_staged).
_FROM_STAGING = """
WITH known AS (
    SELECT c.id, c.external_id FROM (SELECT DISTINCT customer FROM interaction_stage) s
    CROSS JOIN LATERAL (
        SELECT c.id, c.external_id FROM customer c WHERE c.workspace_id = $1 AND c.external_id = s.customer OFFSET 0
    ) c
), created AS (
    INSERT INTO customer (id, workspace_id, external_id, profile, consents, channel_preferences, existing_customer,
                          persona_id, persona_rule)
    SELECT DISTINCT ON (s.customer) s.new_customer_id, $1, s.customer, '{}', '[]', '[]', false, $2, $3
    FROM interaction_stage s WHERE NOT EXISTS (SELECT 1 FROM known k WHERE k.external_id = s.customer)
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
    RETURNING event_id, customer_id
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
    rows = await raw.fetch(_FROM_STAGING, workspace_id, assigned.persona_id, assigned.rule)
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


async def copy_interactions(
    session: AsyncSession,
    workspace_id: str,
    valid: dict[int, Any],
    touchpoints: dict[str, Any],
    journeys: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[CustomerPublic | dict[str, Any]]]:
    """COPY the items into a per-connection temp table, then one statement creates the unknown
    customers and inserts the interactions (ON CONFLICT DO NOTHING: replays are not inserted).
    Returns the stored rows (InteractionPublic shape) and the created customers (CustomerPublic
    shape).

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
            item.channel.value if item.channel else tp.channel, item.occurred_at, journey, json_text(item.properties),
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
            "version": 1,
            "created_at": created_at,
            "updated_at": created_at,
        }
        for external_id, id_, created_at in staged.created
    ]
    return stored, created
