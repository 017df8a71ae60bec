"""One customer's DNA and timeline: small per-customer aggregates over the (customer, time) index."""

from __future__ import annotations

import base64
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.errors import NotFound
from services.common.pagination import cursor_bytes, not_a_cursor
from services.journey.models import (
    ChannelCount,
    CustomerDna,
    JourneyDna,
    OutcomeCount,
    StageRef,
    Timeline,
    TimelineItem,
    TouchpointMet,
    VisitorType,
)

VISIT_GAP_MINUTES = 30
CONVERTING_OUTCOMES = ("purchase", "conversion")

_CUSTOMER = sa.text("""
SELECT c.id, c.external_id, c.persona_id, p.key AS persona_key, c.existing_customer
FROM customer c LEFT JOIN persona p ON p.id = c.persona_id
WHERE c.workspace_id = :w AND c.external_id = :e
""")
_OVERALL = sa.text(f"""
SELECT count(*) AS n, min(occurred_at) AS first_seen, max(occurred_at) AS last_seen,
       count(*) FILTER (WHERE gap IS NULL OR gap > interval '{VISIT_GAP_MINUTES} minutes') AS visits
FROM (SELECT occurred_at, occurred_at - lag(occurred_at) OVER (ORDER BY occurred_at) AS gap
      FROM interaction WHERE workspace_id = :w AND customer_id = :c) x
""")
_CHANNELS = sa.text("""
SELECT channel, count(*) AS n FROM interaction WHERE workspace_id = :w AND customer_id = :c
GROUP BY channel ORDER BY n DESC, channel
""")
_OUTCOMES = sa.text("""
SELECT name, count(*) AS n, sum(value) AS value FROM outcome WHERE workspace_id = :w AND customer_id = :c
GROUP BY name ORDER BY name
""")
# The customer's events that count for each journey (see _scope.py), one row per journey step.
_JOURNEY_EVENTS = """
WITH ev AS (
    SELECT st.journey_id, st.stage_id, i.id, i.touchpoint_id, i.channel, i.occurred_at
    FROM interaction i
    JOIN journey_step st ON st.touchpoint_id = i.touchpoint_id AND st.workspace_id = :w
    WHERE i.workspace_id = :w AND i.customer_id = :c AND (i.journey_id IS NULL OR i.journey_id = st.journey_id)
)
"""
_PER_TOUCHPOINT = sa.text(
    _JOURNEY_EVENTS
    + """
SELECT ev.journey_id, t.key, ev.touchpoint_id, count(DISTINCT ev.id) AS n,
       min(ev.occurred_at) AS first_at, max(ev.occurred_at) AS last_at
FROM ev JOIN touchpoint t ON t.id = ev.touchpoint_id
GROUP BY ev.journey_id, t.key, ev.touchpoint_id ORDER BY ev.journey_id, first_at, t.key
"""
)
_PER_CHANNEL = sa.text(
    _JOURNEY_EVENTS
    + """
SELECT journey_id, channel, count(DISTINCT id) AS n FROM ev GROUP BY journey_id, channel
ORDER BY journey_id, n DESC, channel
"""
)
_STAGE_REACHED = sa.text(
    _JOURNEY_EVENTS
    + """
SELECT DISTINCT ON (ev.journey_id) ev.journey_id, s.id, s.key, s.name, s.position
FROM ev JOIN stage s ON s.id = ev.stage_id ORDER BY ev.journey_id, s.position DESC
"""
)
_JOURNEYS = sa.text("""
SELECT id, key, name, persona_id FROM journey
WHERE workspace_id = :w AND (id = ANY(:ids) OR (CAST(:p AS uuid) IS NOT NULL AND persona_id = CAST(:p AS uuid)))
ORDER BY key
""")


async def customer_dna(session: AsyncSession, *, workspace_id: str, external_id: str) -> CustomerDna:
    customer = (await session.execute(_CUSTOMER, {"w": workspace_id, "e": external_id})).first()
    if customer is None:
        raise NotFound(f"No customer with external_id {external_id!r} in this workspace.")
    p = {"w": workspace_id, "c": customer.id}
    overall = (await session.execute(_OVERALL, p)).one()
    channels = [ChannelCount(channel=r.channel, interactions=r.n) for r in await session.execute(_CHANNELS, p)]
    outcomes = [OutcomeCount(name=r.name, count=r.n, value=r.value) for r in await session.execute(_OUTCOMES, p)]
    touchpoints: dict[UUID, list[TouchpointMet]] = defaultdict(list)
    for r in await session.execute(_PER_TOUCHPOINT, p):
        touchpoints[r.journey_id].append(
            TouchpointMet(
                touchpoint=r.key,
                touchpoint_id=r.touchpoint_id,
                interactions=r.n,
                first_at=r.first_at,
                last_at=r.last_at,
            )
        )
    per_channel: dict[UUID, list[ChannelCount]] = defaultdict(list)
    for r in await session.execute(_PER_CHANNEL, p):
        per_channel[r.journey_id].append(ChannelCount(channel=r.channel, interactions=r.n))
    reached = {
        r.journey_id: StageRef(id=r.id, key=r.key, name=r.name, position=r.position)
        for r in await session.execute(_STAGE_REACHED, p)
    }
    journeys = []
    for j in await session.execute(_JOURNEYS, {"w": workspace_id, "ids": list(touchpoints), "p": customer.persona_id}):
        met = touchpoints.get(j.id, [])
        member_by: list[Any] = []
        if met:
            member_by.append("interaction")
        if customer.persona_id is not None and j.persona_id == customer.persona_id:
            member_by.append("persona")
        journeys.append(
            JourneyDna(
                journey_id=j.id,
                journey=j.key,
                name=j.name,
                member_by=member_by,
                stage_reached=reached.get(j.id),
                interactions=sum(c.interactions for c in per_channel.get(j.id, [])),
                channels=per_channel.get(j.id, []),
                touchpoints=met,
                first_seen=min((t.first_at for t in met), default=None),
                last_seen=max((t.last_at for t in met), default=None),
            )
        )
    if customer.existing_customer or any(o.name in CONVERTING_OUTCOMES for o in outcomes):
        visitor = VisitorType.existing
    elif overall.visits >= 2:
        visitor = VisitorType.returning
    else:
        visitor = VisitorType.first_time
    return CustomerDna(
        customer_id=customer.id,
        external_id=customer.external_id,
        persona_id=customer.persona_id,
        persona_key=customer.persona_key,
        visitor_type=visitor,
        visits=overall.visits,
        interactions=overall.n,
        first_seen=overall.first_seen,
        last_seen=overall.last_seen,
        channels=channels,
        outcomes=outcomes,
        journeys=journeys,
    )


# Timeline ---------------------------------------------------------------------------------------


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _encode(occurred_at: datetime, id: UUID) -> str:
    micros = (occurred_at - _EPOCH) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(micros.to_bytes(8, "big", signed=True) + id.bytes).decode().rstrip("=")


TIMELINE_CURSOR_BYTES = 24  # 8 bytes of microseconds since the epoch + the 16-byte id


def _decode(cursor: str) -> tuple[datetime, UUID]:
    raw = cursor_bytes(cursor, TIMELINE_CURSOR_BYTES)
    micros = int.from_bytes(raw[:8], "big", signed=True)
    try:
        return _EPOCH + timedelta(microseconds=micros), UUID(bytes=raw[8:])
    except OverflowError:  # a time no datetime holds
        raise not_a_cursor(cursor) from None


def _timeline_part(kind: str, cursor: bool) -> str:
    if kind == "interaction":
        cols = "t.key AS touchpoint, x.channel, NULL AS name, NULL::numeric AS value, NULL AS currency"
        table = "interaction"
    else:
        cols = "t.key AS touchpoint, NULL AS channel, x.name, x.value, x.currency"
        table = "outcome"
    after = " AND (x.occurred_at, x.id) < (:t, :id)" if cursor else ""
    return f"""(SELECT '{kind}' AS kind, x.id, x.event_id, x.occurred_at, {cols}, j.key AS journey,
        COALESCE(x.properties, '{{}}'::jsonb) AS properties
    FROM {table} x LEFT JOIN touchpoint t ON t.id = x.touchpoint_id LEFT JOIN journey j ON j.id = x.journey_id
    WHERE x.workspace_id = :w AND x.customer_id = :c{after}
    ORDER BY x.occurred_at DESC, x.id DESC LIMIT :n)"""


async def customer_timeline(
    session: AsyncSession, *, workspace_id: str, customer_id: UUID, cursor: str | None, limit: int
) -> Timeline:
    """Interactions and outcomes, newest first; keyset over (occurred_at, id)."""
    params: dict[str, Any] = {"w": workspace_id, "c": customer_id, "n": limit + 1}
    if cursor is not None:
        params["t"], params["id"] = _decode(cursor)
    sql = (
        f"SELECT * FROM ({_timeline_part('interaction', cursor is not None)} UNION ALL "
        f"{_timeline_part('outcome', cursor is not None)}) u ORDER BY occurred_at DESC, id DESC LIMIT :n"
    )
    rows = (await session.execute(sa.text(sql), params)).all()
    items = [TimelineItem.model_validate(r._mapping) for r in rows[:limit]]
    next_cursor = _encode(items[-1].occurred_at, items[-1].id) if len(rows) > limit else None
    return Timeline(items=items, next_cursor=next_cursor)
