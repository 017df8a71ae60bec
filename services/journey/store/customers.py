"""Every query on customers: upsert (one or thousands), persona assignment, lookups.

Persona rules are a small language evaluated in Python (`rules.py`); everything else is set-based:
a bulk upsert is one `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO UPDATE`. Every change of a
customer bumps its version (1 when created).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
import sqlalchemy as sa
import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from services.common.errors import NotFound
from services.common.pagination import Page, decode_cursor, encode_cursor
from services.journey.models import CustomerBulkItem, CustomerPublic, PersonaRule

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PersonaMatcher:
    id: UUID
    key: str
    rules: list[PersonaRule]


@dataclass(frozen=True, slots=True)
class Assignment:
    persona_id: UUID | None
    persona_key: str | None
    rule: str | None


NO_PERSONA = Assignment(None, None, None)


async def load_personas(session: AsyncSession, *, workspace_id: str) -> list[PersonaMatcher]:
    """The workspace's personas in the order they are tried: priority (lower first), then key."""
    rows = await session.execute(
        sa.text("SELECT id, key, rules FROM persona WHERE workspace_id = :w ORDER BY priority, key"),
        {"w": workspace_id},
    )
    return [PersonaMatcher(r.id, r.key, _readable_rules(r.key, r.rules or [])) for r in rows]


def _readable_rules(persona_key: str, stored: list[Any]) -> list[PersonaRule]:
    """The persona's rules; a stored rule this version cannot read (stored under older, looser
    validation) matches no one and is logged, instead of failing every customer write."""
    rules = []
    for rule in stored:
        try:
            rules.append(PersonaRule.model_validate(rule))
        except ValidationError as exc:
            log.warning("persona rule not readable; it matches no one", persona=persona_key, error=str(exc)[:300])
    return rules


def assign(personas: Sequence[PersonaMatcher], profile: dict[str, Any]) -> Assignment:
    for persona in personas:
        for rule in persona.rules:
            if rule.when.evaluate(profile):
                return Assignment(persona.id, persona.key, rule.name)
    return NO_PERSONA


_UPSERT = sa.text("""
INSERT INTO customer AS c (id, workspace_id, external_id, profile, consents, channel_preferences,
                           existing_customer, persona_id, persona_rule)
SELECT u.id, :w, u.external_id, u.profile::jsonb, u.consents::jsonb, u.prefs::jsonb, u.existing,
       u.persona_id, u.persona_rule
FROM unnest(CAST(:ids AS uuid[]), CAST(:external_ids AS text[]), CAST(:profiles AS text[]),
            CAST(:consents AS text[]), CAST(:prefs AS text[]), CAST(:existing AS boolean[]),
            CAST(:persona_ids AS uuid[]), CAST(:persona_rules AS text[]))
     AS u(id, external_id, profile, consents, prefs, existing, persona_id, persona_rule)
ON CONFLICT (workspace_id, external_id) DO UPDATE SET
    profile = EXCLUDED.profile, consents = EXCLUDED.consents,
    channel_preferences = EXCLUDED.channel_preferences, existing_customer = EXCLUDED.existing_customer,
    persona_id = EXCLUDED.persona_id, persona_rule = EXCLUDED.persona_rule, updated_at = now(),
    version = c.version + 1
RETURNING id, external_id, (xmax = 0) AS created, version, created_at, updated_at
""")


async def upsert_customers(
    session: AsyncSession, *, workspace_id: str, items: Sequence[CustomerBulkItem]
) -> dict[str, tuple[CustomerPublic, bool]]:
    """Create or replace customers; returns external_id -> (public state, created).

    Within one call the last item for an external_id wins (PostgreSQL cannot update a row twice
    in one statement).
    """
    last: dict[str, CustomerBulkItem] = {item.external_id: item for item in items}
    if not last:
        return {}
    personas = await load_personas(session, workspace_id=workspace_id)
    now = datetime.now(UTC)
    values: list[tuple[CustomerBulkItem, Assignment, list[dict[str, Any]]]] = []
    for item in last.values():
        consents = [c.model_copy(update={"at": c.at or now}).model_dump(mode="json") for c in item.consents]
        values.append((item, assign(personas, item.profile), consents))
    rows = await session.execute(
        _UPSERT,
        {
            "w": workspace_id,
            "ids": [uuid7() for _ in values],
            "external_ids": [v[0].external_id for v in values],
            "profiles": [orjson.dumps(v[0].profile).decode() for v in values],
            "consents": [orjson.dumps(v[2]).decode() for v in values],
            "prefs": [orjson.dumps(v[0].channel_preferences).decode() for v in values],
            "existing": [v[0].existing_customer for v in values],
            "persona_ids": [v[1].persona_id for v in values],
            "persona_rules": [v[1].rule for v in values],
        },
    )
    by_ext = {v[0].external_id: v for v in values}
    out: dict[str, tuple[CustomerPublic, bool]] = {}
    for r in rows:
        item, assigned, consents = by_ext[r.external_id]
        public = CustomerPublic(
            id=r.id,
            external_id=r.external_id,
            profile=item.profile,
            consents=consents,
            channel_preferences=item.channel_preferences,
            existing_customer=item.existing_customer,
            persona_id=assigned.persona_id,
            persona_key=assigned.persona_key,
            persona_rule=assigned.rule,
            version=r.version,
            created_at=r.created_at,
            updated_at=r.updated_at,
        )
        out[r.external_id] = (public, bool(r.created))
    return out


_ENSURE = sa.text("""
WITH wanted AS (
    SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:external_ids AS text[])) AS u(id, external_id)
), ins AS (
    INSERT INTO customer (id, workspace_id, external_id, profile, consents, channel_preferences,
                          existing_customer, persona_id, persona_rule)
    SELECT wanted.id, CAST(:w AS varchar), wanted.external_id, '{}', '[]', '[]', false,
           CAST(:persona_id AS uuid), CAST(:persona_rule AS text)
    FROM wanted
    WHERE NOT EXISTS (SELECT 1 FROM customer c
                      WHERE c.workspace_id = CAST(:w AS varchar) AND c.external_id = wanted.external_id)
    ON CONFLICT (workspace_id, external_id) DO NOTHING
    RETURNING id, external_id, version, created_at
)
SELECT id, external_id, true AS created, version, created_at FROM ins
UNION ALL
SELECT c.id, c.external_id, false, c.version, c.created_at FROM customer c JOIN wanted USING (external_id)
WHERE c.workspace_id = CAST(:w AS varchar)
""")


async def ensure_customers(
    session: AsyncSession, *, workspace_id: str, external_ids: Sequence[str]
) -> tuple[dict[str, UUID], list[CustomerPublic]]:
    """Ids of these customers, creating the unknown ones (empty profile, persona evaluated on it)."""
    if not external_ids:
        return {}, []
    personas = await load_personas(session, workspace_id=workspace_id)
    assigned = assign(personas, {})
    wanted = list(dict.fromkeys(external_ids))
    rows = (
        await session.execute(
            _ENSURE,
            {
                "w": workspace_id,
                "ids": [uuid7() for _ in wanted],
                "external_ids": wanted,
                "persona_id": assigned.persona_id,
                "persona_rule": assigned.rule,
            },
        )
    ).all()
    # asyncpg's own UUID type is not uuid.UUID; orjson (events) only encodes the latter.
    ids = {r.external_id: UUID(bytes=r.id.bytes) for r in rows}
    missing = [e for e in wanted if e not in ids]
    if missing:  # inserted by a concurrent transaction after this statement's snapshot
        found = await session.execute(
            sa.text("SELECT external_id, id FROM customer WHERE workspace_id = :w AND external_id = ANY(:e)"),
            {"w": workspace_id, "e": missing},
        )
        ids.update({r.external_id: UUID(bytes=r.id.bytes) for r in found})
    created = [
        CustomerPublic(
            id=r.id,
            external_id=r.external_id,
            profile={},
            consents=[],
            channel_preferences=[],
            existing_customer=False,
            persona_id=assigned.persona_id,
            persona_key=assigned.persona_key,
            persona_rule=assigned.rule,
            version=r.version,
            created_at=r.created_at,
            updated_at=r.created_at,
        )
        for r in rows
        if r.created
    ]
    return ids, created


_SELECT = """
SELECT c.id, c.external_id, c.profile, c.consents, c.channel_preferences, c.existing_customer,
       c.persona_id, p.key AS persona_key, c.persona_rule, c.version, c.created_at, c.updated_at
FROM customer c LEFT JOIN persona p ON p.id = c.persona_id
WHERE c.workspace_id = :w
"""


async def get_customer(session: AsyncSession, *, workspace_id: str, external_id: str) -> CustomerPublic:
    row = (
        await session.execute(sa.text(_SELECT + " AND c.external_id = :e"), {"w": workspace_id, "e": external_id})
    ).first()
    if row is None:
        raise NotFound(f"No customer with external_id {external_id!r} in this workspace.")
    return CustomerPublic.model_validate(row._mapping)


async def customer_id(session: AsyncSession, *, workspace_id: str, external_id: str) -> UUID:
    found = await session.scalar(
        sa.text("SELECT id FROM customer WHERE workspace_id = :w AND external_id = :e"),
        {"w": workspace_id, "e": external_id},
    )
    if found is None:
        raise NotFound(f"No customer with external_id {external_id!r} in this workspace.")
    return UUID(str(found))


async def list_customers(
    session: AsyncSession,
    *,
    workspace_id: str,
    persona_id: UUID | None,
    without_persona: bool,
    cursor: str | None,
    limit: int,
) -> Page[CustomerPublic]:
    sql = _SELECT
    params: dict[str, Any] = {"w": workspace_id, "n": limit + 1}
    if persona_id is not None:
        sql += " AND c.persona_id = :p"
        params["p"] = persona_id
    if without_persona:
        sql += " AND c.persona_id IS NULL"
    if cursor is not None:
        sql += " AND c.id > :after"
        params["after"] = decode_cursor(cursor)
    rows = (await session.execute(sa.text(sql + " ORDER BY c.id LIMIT :n"), params)).all()
    items = [CustomerPublic.model_validate(r._mapping) for r in rows[:limit]]
    next_cursor = encode_cursor(items[-1].id) if len(rows) > limit else None
    return Page[CustomerPublic](items=items, next_cursor=next_cursor)


_REASSIGN = sa.text("""
UPDATE customer c SET persona_id = u.persona_id, persona_rule = u.persona_rule, updated_at = now(),
    version = c.version + 1
FROM unnest(CAST(:ids AS uuid[]), CAST(:persona_ids AS uuid[]), CAST(:persona_rules AS text[]),
            CAST(:seen AS bigint[]))
     AS u(id, persona_id, persona_rule, seen)
-- a customer changed since it was read was evaluated then: leave it
WHERE c.id = u.id AND c.workspace_id = :w AND c.version = u.seen
RETURNING c.id, c.external_id, c.profile, c.consents, c.channel_preferences, c.existing_customer, c.persona_id,
          c.persona_rule, c.version, c.created_at, c.updated_at
""")


async def reassign_personas(
    session: AsyncSession, *, workspace_id: str, batch_size: int = 5000
) -> AsyncIterator[list[CustomerPublic]]:
    """Evaluate the current persona rules on every customer of the workspace; yields, per batch, the
    customers whose persona changed (their new state, version + 1).

    Keyset batches over the primary key keep memory flat; only changed rows are written.
    """
    personas = await load_personas(session, workspace_id=workspace_id)
    keys = {p.id: p.key for p in personas}
    after: UUID | None = None
    while True:
        rows = (
            await session.execute(
                sa.text(
                    "SELECT id, profile, persona_id, persona_rule, version FROM customer WHERE workspace_id = :w "
                    "AND (CAST(:after AS uuid) IS NULL OR id > CAST(:after AS uuid)) ORDER BY id LIMIT :n"
                ),
                {"w": workspace_id, "after": after, "n": batch_size},
            )
        ).all()
        if not rows:
            return
        updates = []
        for r in rows:
            a = assign(personas, r.profile or {})
            if (a.persona_id, a.rule) != (r.persona_id, r.persona_rule):
                updates.append((r.id, a, r.version))
        if updates:
            changed = await session.execute(
                _REASSIGN,
                {
                    "w": workspace_id,
                    "ids": [u[0] for u in updates],
                    "persona_ids": [u[1].persona_id for u in updates],
                    "persona_rules": [u[1].rule for u in updates],
                    "seen": [u[2] for u in updates],
                },
            )
            yield [
                CustomerPublic.model_validate({**r._mapping, "persona_key": keys.get(r.persona_id)}) for r in changed
            ]
        after = rows[-1].id
