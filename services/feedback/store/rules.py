"""Closed-loop rules: create, read, change, delete (the cases projection applies them, loop.py)."""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.errors import NotFound, Unprocessable
from services.common.pagination import Page, keyset, page_of
from services.feedback.comments import THEMES
from services.feedback.models import LoopRule, Metric, RuleCreate, RulePublic, RuleUpdate


async def create_rule(session: AsyncSession, *, workspace_id: str, data: RuleCreate) -> LoopRule:
    _check_rule(data.metric, data.max_score, data.theme)
    await _check_survey(session, workspace_id=workspace_id, survey_id=data.survey_id)
    row = LoopRule(workspace_id=workspace_id, **data.model_dump())
    session.add(row)
    await session.flush()
    await session.refresh(row)
    return row


_SURVEY = sa.text("SELECT 1 FROM survey WHERE workspace_id = :w AND id = :s")


async def _check_survey(session: AsyncSession, *, workspace_id: str, survey_id: UUID | None) -> None:
    """A rule's survey is one of the workspace's (a rule for another's would never match)."""
    if survey_id is None:
        return
    found = await session.execute(_SURVEY, {"w": workspace_id, "s": survey_id})
    if found.first() is None:
        raise Unprocessable(
            f"survey_id: no survey with id {survey_id} in this workspace.",
            errors=[{"field": "survey_id", "message": f"no survey with id {survey_id} in this workspace"}],
        )


def _check_rule(metric: Metric | str | None, max_score: int | None, theme: str | None) -> None:
    if theme is not None and theme not in THEMES:
        known = ", ".join(THEMES)
        raise Unprocessable(
            f"theme {theme!r} is not one the comment analysis finds: {known}.",
            errors=[{"field": "theme", "message": f"one of {known}"}],
        )
    if (metric is None) != (max_score is None):
        raise Unprocessable(
            "metric and max_score go together: set both, or neither for a theme-only rule.",
            errors=[{"field": "max_score", "message": "set with metric"}],
        )
    if metric is None and theme is None:
        raise Unprocessable(
            "A rule needs a score condition (metric, max_score), a theme, or both.",
            errors=[{"field": "metric", "message": "no condition"}],
        )
    limits = {"nps": 10, "csat": 5, "ces": 7}
    if metric is not None and max_score is not None and max_score > limits[str(metric)]:
        raise Unprocessable(
            f"max_score {max_score} is above the {metric} scale's maximum {limits[str(metric)]}.",
            errors=[{"field": "max_score", "message": f"at most {limits[str(metric)]} for {metric}"}],
        )


async def get_rule(session: AsyncSession, *, workspace_id: str, rule_id: UUID) -> LoopRule:
    row = (
        await session.execute(
            sa.select(LoopRule).where(LoopRule.id == rule_id, LoopRule.workspace_id == workspace_id)  # type: ignore[arg-type]
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"No rule with id {rule_id} in this workspace.")
    return row


async def list_rules(session: AsyncSession, *, workspace_id: str, cursor: str | None, limit: int) -> Page[LoopRule]:
    stmt = sa.select(LoopRule).where(LoopRule.workspace_id == workspace_id)  # type: ignore[arg-type]
    rows = (await session.execute(keyset(stmt, LoopRule.id, cursor=cursor, limit=limit))).scalars().all()
    return page_of(list(rows), limit=limit, id_of=lambda r: r.id)


async def update_rule(session: AsyncSession, *, workspace_id: str, rule_id: UUID, data: RuleUpdate) -> LoopRule:
    row = await get_rule(session, workspace_id=workspace_id, rule_id=rule_id)
    changes = data.model_dump(exclude_unset=True)
    for field, value in changes.items():
        setattr(row, field, value)
    _check_rule(row.metric, row.max_score, row.theme)
    if "survey_id" in changes:
        await _check_survey(session, workspace_id=workspace_id, survey_id=data.survey_id)
    row.version += 1
    row.updated_at = sa.func.now()  # type: ignore[assignment]
    await session.flush()
    await session.refresh(row)
    return row


async def delete_rule(session: AsyncSession, *, workspace_id: str, rule_id: UUID) -> RulePublic:
    """Delete the rule (its cases stay); returns its last state with the version of its deletion."""
    row = await get_rule(session, workspace_id=workspace_id, rule_id=rule_id)
    last = RulePublic.model_validate(row).model_copy(update={"version": row.version + 1})
    await session.delete(row)
    await session.flush()
    return last
