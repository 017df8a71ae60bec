"""GET /v1/journeys/{id}/reach: per step, distinct customers who met its touchpoint ÷ customers in the journey.

Customers in the journey = those with an event at one of its touchpoints in the time range, plus —
for a journey of a persona — every customer assigned to that persona (DESIGN.md §4, issue 3).

Over all time from the customer × touchpoint projection (complete up to `as_of`, the last event it
applied); within a time range from the interactions (`as_of` the read time). The pairs are kept per
touchpoint, not per journey: a change of the journey's steps needs no rebuild.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.journey.models import UNTAGGED, Reach, StepReach
from services.journey.store.analytics import rollup
from services.journey.store.analytics._scope import event_filter, journey_scope, time_range

_STEPS = """
WITH steps AS (
    SELECT st.id AS step_id, st.touchpoint_id, s.key AS stage, s.position, st.position AS step_position,
           t.key AS touchpoint
    FROM journey_step st JOIN stage s ON s.id = st.stage_id JOIN touchpoint t ON t.id = st.touchpoint_id
    WHERE st.journey_id = :j AND st.workspace_id = :w
)"""
_RESULT = """
SELECT steps.step_id, steps.stage, steps.touchpoint, steps.touchpoint_id,
       COALESCE(per_touchpoint.n, 0) AS customers, members.n AS members
FROM steps CROSS JOIN members LEFT JOIN per_touchpoint USING (touchpoint_id)
ORDER BY steps.position, steps.step_position
"""
_PAIRS = "customer_touchpoint ct WHERE ct.workspace_id = :w AND ct.journey_tag IN (:untagged, :j)"


def _members(source: str, with_persona: bool) -> str:
    # UNION (not UNION ALL) also makes the customers of `source` distinct.
    persona = " UNION SELECT id FROM customer WHERE workspace_id = :w AND persona_id = :persona" if with_persona else ""
    # MATERIALIZED: inlined, the count ran again for every step (a nested loop over the steps).
    return f"""members AS MATERIALIZED (
    SELECT count(*) AS n FROM ({source} UNION SELECT NULL::uuid WHERE false{persona}) m
)"""


def reach_sql(filters: str | None, persona: bool) -> str:
    """Over all time the projection answers (one row per customer and touchpoint); within a time
    window only the interactions can (`filters` set)."""
    if filters is None:
        # Per touchpoint the projection's key is ordered by customer: DISTINCT streams, no hash or sort.
        return f"""{_STEPS},
per_touchpoint AS MATERIALIZED (
    SELECT tp.touchpoint_id,
           (SELECT count(*) FROM (SELECT DISTINCT ct.customer_id FROM {_PAIRS}
                                  AND ct.touchpoint_id = tp.touchpoint_id) d) AS n
    FROM (SELECT DISTINCT touchpoint_id FROM steps) tp
),
{_members(f"SELECT ct.customer_id FROM {_PAIRS} AND ct.touchpoint_id IN (SELECT touchpoint_id FROM steps)", persona)}
{_RESULT}"""
    members_of_persona = (
        " UNION ALL SELECT c.id, (SELECT repeat('0', count(*)::int)::varbit FROM bits) FROM customer c"
        " WHERE c.workspace_id = :w AND c.persona_id = :persona"
        if persona
        else ""
    )
    # Per customer, the set of the journey's touchpoints met, as a bit string; then per distinct set
    # the customers holding it. Counting per touchpoint over those few sets, not over the customer ×
    # touchpoint pairs, halved the statement (docs/engineering-notes.md).
    return f"""{_STEPS},
numbered AS (
    SELECT touchpoint_id, (row_number() OVER (ORDER BY touchpoint_id) - 1)::int AS bit, count(*) OVER () AS n
    FROM (SELECT DISTINCT touchpoint_id FROM steps) d
),
bits AS MATERIALIZED (SELECT touchpoint_id, bit, set_bit(repeat('0', n::int)::varbit, bit, 1) AS mask FROM numbered),
sets AS MATERIALIZED (
    SELECT met, count(*) AS n FROM (
        SELECT m.customer_id, bit_or(m.mask) AS met FROM (
            SELECT i.customer_id, bits.mask FROM interaction i JOIN bits ON bits.touchpoint_id = i.touchpoint_id
            WHERE true{filters}{members_of_persona}
        ) m GROUP BY m.customer_id
    ) c GROUP BY met
),
per_touchpoint AS (
    SELECT bits.touchpoint_id, (SELECT sum(s.n) FROM sets s WHERE get_bit(s.met, bits.bit) = 1)::bigint AS n FROM bits
),
members AS MATERIALIZED (SELECT coalesce(sum(n), 0)::bigint AS n FROM sets)
{_RESULT}"""


async def journey_reach(
    session: AsyncSession,
    *,
    workspace_id: str,
    journey_id: Any,
    since: datetime | None,
    until: datetime | None,
) -> Reach:
    scope = await journey_scope(session, workspace_id=workspace_id, journey_id=journey_id)
    since, until = time_range(since, until)
    params: dict[str, Any] = {"w": workspace_id, "j": journey_id}
    if scope.persona_id is not None:
        params["persona"] = scope.persona_id
    if since is None and until is None:
        filters, params["untagged"] = None, UNTAGGED
        as_of = await rollup.consumer_as_of(session, workspace_id=workspace_id)
    else:
        filters, as_of = event_filter("i", since, until, params), datetime.now(UTC)
    rows = (await session.execute(sa.text(reach_sql(filters, scope.persona_id is not None)), params)).all()
    members = int(rows[0].members) if rows else 0
    if not rows:
        members = int(
            await session.scalar(
                sa.text("SELECT count(*) FROM customer WHERE workspace_id = :w AND persona_id = :p"),
                {"w": workspace_id, "p": scope.persona_id},
            )
            or 0
        )
    return Reach(
        journey_id=journey_id,
        since=since,
        until=until,
        journey_customers=members,
        steps=[
            StepReach(
                step_id=r.step_id,
                stage=r.stage,
                touchpoint=r.touchpoint,
                touchpoint_id=r.touchpoint_id,
                customers=r.customers,
                reach=r.customers / members if members else None,
            )
            for r in rows
        ],
        as_of=as_of,
    )
