"""GET /v1/journeys/{id}/map in one statement: PostgreSQL assembles the JSON document.

The map of a large journey (10 stages × 200 steps) is ~2,000 objects; building it in SQL and
passing the bytes through avoids loading 2,000 ORM rows and serialising them again in Python.
The keys below mirror `models.JourneyMap`; tests validate the output against that model.

Built documents are kept in `journey_map_cache` and served while their version equals the
journey's `map_version`, which triggers bump on every change that shows in the map (migration
0004). A document built from an older snapshot never replaces a newer one.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common.errors import NotFound

_TOUCHPOINT = """json_build_object(
    'id', t.id, 'key', t.key, 'name', t.name, 'channel', t.channel, 'department', t.department,
    'yearly_cost', t.yearly_cost::text, 'currency', t.currency, 'description', t.description,
    'created_at', t.created_at, 'updated_at', t.updated_at)"""

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
        'state', j.state, 'improves_journey_id', j.improves_journey_id,
        'created_at', j.created_at, 'updated_at', j.updated_at),
    'persona', (SELECT json_build_object(
        'id', p.id, 'key', p.key, 'name', p.name, 'role', p.role, 'background', p.background,
        'needs', p.needs, 'goals', p.goals, 'pains', p.pains, 'priority', p.priority,
        'rules', p.rules, 'created_at', p.created_at, 'updated_at', p.updated_at)
        FROM persona p WHERE p.id = j.persona_id),
    'stages', COALESCE((SELECT json_agg(json_build_object(
        'id', s.id, 'journey_id', s.journey_id, 'key', s.key, 'name', s.name,
        'position', s.position, 'steps', COALESCE(steps.items, '[]'::json)) ORDER BY s.position)
        FROM stage s LEFT JOIN steps ON steps.stage_id = s.id
        WHERE s.journey_id = j.id), '[]'::json)
)::text AS doc, j.map_version FROM j
""")

# Bump when the document's shape changes: cached documents of another format are rebuilt.
MAP_FORMAT = 1

_CACHED = sa.text(
    "SELECT c.doc FROM journey j JOIN journey_map_cache c "
    "ON c.journey_id = j.id AND c.version = j.map_version AND c.format = :format "
    "WHERE j.id = :journey_id AND j.workspace_id = :workspace_id"
)
_STORE = sa.text(
    "INSERT INTO journey_map_cache (journey_id, workspace_id, version, format, doc) "
    "VALUES (:journey_id, :workspace_id, :version, :format, :doc) "
    "ON CONFLICT (journey_id) DO UPDATE SET version = EXCLUDED.version, format = EXCLUDED.format, "
    "doc = EXCLUDED.doc, built_at = now() "
    "WHERE (journey_map_cache.version, journey_map_cache.format) < (EXCLUDED.version, EXCLUDED.format)"
)


@dataclass(frozen=True, slots=True)
class BuiltMap:
    """A document built because the cache had none current; `remember` stores it."""

    journey_id: UUID
    workspace_id: str
    version: int
    doc: str


async def journey_map_json(
    session: AsyncSession, *, workspace_id: str, journey_id: UUID
) -> tuple[bytes, BuiltMap | None]:
    """The map document, and what to cache when it had to be built."""
    keys = {"journey_id": journey_id, "workspace_id": workspace_id}
    cached = await session.scalar(_CACHED, {**keys, "format": MAP_FORMAT})
    if cached is not None:
        return str(cached).encode(), None
    row = (await session.execute(MAP_SQL, keys)).first()
    if row is None:
        raise NotFound(f"No journey with id {journey_id} in this workspace.")
    return str(row.doc).encode(), BuiltMap(journey_id, workspace_id, int(row.map_version), str(row.doc))


async def remember(sessionmaker: async_sessionmaker[AsyncSession], built: BuiltMap) -> None:
    """Cache a built document (after the response is sent: the caller does not wait for it). The
    version guard keeps a newer document when a concurrent change rebuilt it meanwhile."""
    async with sessionmaker() as session, session.begin():
        await session.execute(
            _STORE,
            {"journey_id": built.journey_id, "workspace_id": built.workspace_id, "version": built.version,
             "format": MAP_FORMAT, "doc": built.doc},
        )  # fmt: skip
