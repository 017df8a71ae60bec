"""Every query of the scoring service's API: settings, scopes, snapshots, cross-journey relevance."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.errors import Conflict
from services.common.ids import new_ids
from services.scoring import tallies
from services.scoring.compute import ScoringConfig
from services.scoring.models import MAX_SCOPES, ScopeShape, ScoreSettings, ScoreSettingsPublic

_SETTINGS = text("SELECT settings, version, updated_at FROM score_settings WHERE workspace_id = :w")
_SAVE_SETTINGS = text(
    "INSERT INTO score_settings AS s (workspace_id, settings, version) VALUES (:w, CAST(:settings AS jsonb), 1) "
    "ON CONFLICT (workspace_id) DO UPDATE SET settings = EXCLUDED.settings, version = s.version + 1, "
    "updated_at = now() RETURNING version, updated_at"
)
# Refitted now: new settings, or a caller asking for it.
_DUE_NOW = "ON CONFLICT (workspace_id, journey_id) DO UPDATE SET fit_due_at = now()"
_MARK_WORKSPACE = text(
    "INSERT INTO dirty_journey AS d (workspace_id, journey_id, fit_due_at) "
    f"SELECT workspace_id, id, now() FROM journey WHERE workspace_id = :w AND NOT deleted ORDER BY id {_DUE_NOW}"
)
_MARK_JOURNEY = text(
    f"INSERT INTO dirty_journey AS d (workspace_id, journey_id, fit_due_at) VALUES (:w, :j, now()) {_DUE_NOW} "
    "RETURNING fit_due_at"
)
_SCOPE_MATCH = (
    "workspace_id = :w AND journey_id = :j AND persona_id IS NOT DISTINCT FROM CAST(:persona AS uuid) "
    "AND since IS NOT DISTINCT FROM CAST(:since AS timestamptz) "
    "AND until IS NOT DISTINCT FROM CAST(:until AS timestamptz)"
)
_FIND_SCOPE = text(f"SELECT id FROM score_scope WHERE {_SCOPE_MATCH}")
_ADD_SCOPE = text(
    "INSERT INTO score_scope (id, workspace_id, journey_id, persona_id, since, until) "
    "VALUES (:id, :w, :j, :persona, :since, :until) ON CONFLICT DO NOTHING"
)
_COUNT_SCOPES = text("SELECT count(*) FROM score_scope WHERE workspace_id = :w AND journey_id = :j")
_SCOPES = text(
    "SELECT id, persona_id, since, until FROM score_scope WHERE workspace_id = :w AND journey_id = :j "
    "ORDER BY created_at, id"
)
_FORGET_SNAPSHOTS = text("DELETE FROM score_snapshot WHERE workspace_id = :w AND journey_id = :j AND scope_id = :scope")
_FORGET_SCOPE = text("DELETE FROM score_scope WHERE workspace_id = :w AND journey_id = :j AND id = :scope")
_JOURNEY_KNOWN = text("SELECT NOT deleted FROM journey WHERE id = :j AND workspace_id = :w")
_LATEST = text(
    "SELECT DISTINCT ON (s.journey_id) s.journey_id, s.body FROM score_snapshot s "
    "JOIN score_scope c ON c.id = s.scope_id "
    "JOIN journey j ON j.id = s.journey_id AND j.workspace_id = s.workspace_id AND NOT j.deleted "
    "WHERE s.workspace_id = :w AND s.journey_id = ANY(CAST(:js AS uuid[])) AND c.persona_id IS NOT DISTINCT FROM "
    "CAST(:persona AS uuid) AND c.since IS NOT DISTINCT FROM CAST(:since AS timestamptz) "
    "AND c.until IS NOT DISTINCT FROM CAST(:until AS timestamptz) ORDER BY s.journey_id, s.id DESC"
)
_HISTORY = text(
    "SELECT s.id, s.journey_id, s.scope_id, s.version, s.computed_at, b->'health'->>'score' AS health, "
    "b->'health'->>'low' AS health_low, b->'health'->>'high' AS health_high, "
    "(b->'counts'->>'customers')::int AS customers "
    "FROM score_snapshot s, LATERAL (SELECT convert_from(s.body, 'UTF8')::jsonb AS b) j "
    "WHERE s.workspace_id = :w AND s.journey_id = :j AND s.scope_id = :scope "
    "AND (CAST(:after AS uuid) IS NULL OR s.id < CAST(:after AS uuid)) ORDER BY s.id DESC LIMIT :limit"
)
_RELEVANCE = text(
    "SELECT r.touchpoint_id, r.journey_id, r.relevance, r.relevance_low, r.relevance_high, r.customers, "
    "r.conversion_value, r.snapshot_id FROM touchpoint_relevance r JOIN journey j ON j.id = r.journey_id "
    "AND NOT j.deleted WHERE r.workspace_id = :w AND r.touchpoint_id = ANY(CAST(:tps AS uuid[])) "
    "ORDER BY r.touchpoint_id, r.journey_id"
)


async def load_settings(session: AsyncSession, *, workspace_id: str) -> ScoreSettingsPublic:
    row = (await session.execute(_SETTINGS, {"w": workspace_id})).first()
    if row is None:
        return ScoreSettingsPublic(**ScoreSettings().model_dump(), version=0, updated_at=None)
    return ScoreSettingsPublic(**row.settings, version=row.version, updated_at=row.updated_at)


async def save_settings(session: AsyncSession, *, workspace_id: str, settings: ScoreSettings) -> ScoreSettingsPublic:
    """Store the settings and rescore every journey of the workspace with them."""
    row = (await session.execute(_SAVE_SETTINGS, {"w": workspace_id, "settings": settings.model_dump_json()})).one()
    await tallies.drop_workspace(session, workspace_id=workspace_id)  # what counts as a conversion may change
    await session.execute(_MARK_WORKSPACE, {"w": workspace_id})
    return ScoreSettingsPublic(**settings.model_dump(), version=row.version, updated_at=row.updated_at)


async def load_config(session: AsyncSession, *, workspace_id: str) -> ScoringConfig:
    s = await load_settings(session, workspace_id=workspace_id)
    known = {f.name for f in fields(ScoringConfig)}
    values: dict[str, Any] = {k: v for k, v in s.model_dump().items() if k in known}
    values["conversion_outcomes"] = tuple(values["conversion_outcomes"])
    return ScoringConfig(**values)


async def journey_known(session: AsyncSession, *, workspace_id: str, journey_id: UUID) -> bool:
    return bool(await session.scalar(_JOURNEY_KNOWN, {"w": workspace_id, "j": journey_id}))


def _scope_params(workspace_id: str, journey_id: UUID, scope: ScopeShape) -> dict[str, Any]:
    return {"w": workspace_id, "j": journey_id, "persona": scope.persona_id, "since": scope.since, "until": scope.until}


async def request_recompute(
    session: AsyncSession, *, workspace_id: str, journey_id: UUID, scope: ScopeShape
) -> tuple[UUID, datetime]:
    """Add the scope if it is new (it is then kept up to date) and make the journey due now."""
    params = _scope_params(workspace_id, journey_id, scope)
    scope_id = await session.scalar(_FIND_SCOPE, params)
    if scope_id is None:
        # Every scope is rescored with every change of the journey: their number is bounded.
        if await session.scalar(_COUNT_SCOPES, params) >= MAX_SCOPES:
            raise Conflict(
                f"Journey {journey_id} already keeps {MAX_SCOPES} scopes up to date, the most it may: remove one "
                "you no longer read (DELETE /v1/journeys/{id}/scopes with its persona_id, since and until) first."
            )
        await session.execute(_ADD_SCOPE, {**params, "id": new_ids(1)[0]})
        scope_id = await session.scalar(_FIND_SCOPE, params)
    due_at = await session.scalar(_MARK_JOURNEY, {"w": workspace_id, "j": journey_id})
    return scope_id, due_at


async def list_scopes(session: AsyncSession, *, workspace_id: str, journey_id: UUID) -> list[Any]:
    return list(await session.execute(_SCOPES, {"w": workspace_id, "j": journey_id}))


async def remove_scope(session: AsyncSession, *, workspace_id: str, journey_id: UUID, scope_id: UUID) -> None:
    """Forget a scope and its snapshots: it is no longer kept up to date."""
    params = {"w": workspace_id, "j": journey_id, "scope": scope_id}
    await session.execute(_FORGET_SNAPSHOTS, params)
    await tallies.forget(session, scope_id=scope_id)
    await session.execute(_FORGET_SCOPE, params)


async def find_scope(session: AsyncSession, *, workspace_id: str, journey_id: UUID, scope: ScopeShape) -> UUID | None:
    found: UUID | None = await session.scalar(_FIND_SCOPE, _scope_params(workspace_id, journey_id, scope))
    return found


async def latest_snapshots(
    session: AsyncSession, *, workspace_id: str, journey_ids: list[UUID], scope: ScopeShape
) -> dict[UUID, bytes]:
    """Journey id -> the JSON of its latest snapshot in the scope (journeys without one are left out)."""
    params = {"w": workspace_id, "js": journey_ids, **_scope_params(workspace_id, journey_ids[0], scope)}
    return {row.journey_id: row.body for row in await session.execute(_LATEST, params)}


async def history(
    session: AsyncSession, *, workspace_id: str, journey_id: UUID, scope_id: UUID, after: UUID | None, limit: int
) -> list[Any]:
    params = {"w": workspace_id, "j": journey_id, "scope": scope_id, "after": after, "limit": limit}
    return list(await session.execute(_HISTORY, params))


async def relevance_rows(session: AsyncSession, *, workspace_id: str, touchpoint_ids: list[UUID]) -> list[Any]:
    return list(await session.execute(_RELEVANCE, {"w": workspace_id, "tps": touchpoint_ids}))
