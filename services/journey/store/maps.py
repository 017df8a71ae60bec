"""GET /v1/journeys/{id}/map in one statement: PostgreSQL assembles the JSON document.

The map of a large journey (10 stages × 200 steps) is ~2,000 objects; building it in SQL and
passing the bytes through avoids loading 2,000 ORM rows and serialising them again in Python.
The keys below mirror `models.JourneyMap`; tests validate the output against that model.

Built on every request: a GET never writes (the cache of built documents, and the triggers that
kept it current, went with migration 0011); `make bench` times it against its raw SQL.
"""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.errors import NotFound


def _iso(column: str) -> str:
    """SQL: a timestamptz as the API's JSON renders every date-time (pydantic's form): UTC with `Z`,
    microseconds only when there are some. PostgreSQL's own JSON form is `+00:00`."""
    return (
        f"to_char({column} AT TIME ZONE 'UTC', CASE WHEN date_trunc('second', {column}) = {column} "
        """THEN 'YYYY-MM-DD"T"HH24:MI:SS"Z"' ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"' END)"""
    )


_TOUCHPOINT = f"""json_build_object(
    'id', t.id, 'key', t.key, 'name', t.name, 'channel', t.channel, 'department', t.department,
    'yearly_cost', t.yearly_cost::text, 'currency', t.currency, 'description', t.description,
    'version', t.version, 'created_at', {_iso("t.created_at")}, 'updated_at', {_iso("t.updated_at")})"""

MAP_SQL = sa.text(f"""
WITH j AS (
    SELECT * FROM journey WHERE id = :journey_id AND workspace_id = :workspace_id
), steps AS (
    SELECT st.stage_id,
           json_agg(json_build_object(
               'id', st.id, 'journey_id', st.journey_id, 'stage_id', st.stage_id,
               'touchpoint_id', st.touchpoint_id, 'position', st.position,
               'moment_of_truth', st.moment_of_truth, 'expected_emotion', st.expected_emotion,
               'touchpoint', {_TOUCHPOINT}) ORDER BY st.position) AS items
    FROM journey_step st JOIN touchpoint t ON t.id = st.touchpoint_id
    WHERE st.journey_id = :journey_id AND st.workspace_id = :workspace_id
    GROUP BY st.stage_id
)
SELECT json_build_object(
    'journey', json_build_object(
        'id', j.id, 'key', j.key, 'name', j.name, 'description', j.description,
        'persona_id', j.persona_id, 'owner', j.owner, 'team', j.team, 'status', j.status,
        'state', j.state, 'improves_journey_id', j.improves_journey_id, 'version', j.version,
        'created_at', {_iso("j.created_at")}, 'updated_at', {_iso("j.updated_at")}),
    'persona', (SELECT json_build_object(
        'id', p.id, 'key', p.key, 'name', p.name, 'role', p.role, 'background', p.background,
        'needs', p.needs, 'goals', p.goals, 'pains', p.pains, 'priority', p.priority,
        'rules', p.rules, 'version', p.version, 'created_at', {_iso("p.created_at")},
        'updated_at', {_iso("p.updated_at")})
        FROM persona p WHERE p.id = j.persona_id),
    'stages', COALESCE((SELECT json_agg(json_build_object(
        'id', s.id, 'journey_id', s.journey_id, 'key', s.key, 'name', s.name,
        'position', s.position, 'steps', COALESCE(steps.items, '[]'::json)) ORDER BY s.position)
        FROM stage s LEFT JOIN steps ON steps.stage_id = s.id
        WHERE s.journey_id = j.id), '[]'::json)
)::text AS doc FROM j
""")


async def journey_map_json(session: AsyncSession, *, workspace_id: str, journey_id: UUID) -> bytes:
    """The map document as JSON."""
    doc = await session.scalar(MAP_SQL, {"journey_id": journey_id, "workspace_id": workspace_id})
    if doc is None:
        raise NotFound(f"No journey with id {journey_id} in this workspace.")
    return str(doc).encode()


async def journey_maps_json(session: AsyncSession, *, workspace_id: str, journey_ids: list[UUID]) -> bytes:
    """The maps of many journeys as `{"items": [...], "not_found": [...]}`, in the order asked (one
    statement per journey, one round trip for the caller)."""
    found, missing = [], []
    for journey_id in dict.fromkeys(journey_ids):
        doc = await session.scalar(MAP_SQL, {"journey_id": journey_id, "workspace_id": workspace_id})
        if doc is None:
            missing.append(f'"{journey_id}"')
        else:
            found.append(str(doc))
    return ('{"items":[' + ",".join(found) + '],"not_found":[' + ",".join(missing) + "]}").encode()
