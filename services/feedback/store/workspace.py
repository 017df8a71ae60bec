"""Workspace settings, opt-outs and survey eligibility."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.feedback.models import (
    Eligibility,
    OptOutCreate,
    OptOutPublic,
    WorkspaceSettingsFields,
    WorkspaceSettingsPublic,
)


async def get_settings(session: AsyncSession, *, workspace_id: str) -> WorkspaceSettingsPublic:
    row = (
        await session.execute(
            sa.text(
                "SELECT allow_private_webhook_targets, max_surveys_per_period, period_days, quiet_days, version "
                "FROM workspace_setting WHERE workspace_id = :w"
            ),
            {"w": workspace_id},
        )
    ).first()
    return WorkspaceSettingsPublic.model_validate(dict(row._mapping)) if row else WorkspaceSettingsPublic(version=0)


async def put_settings(
    session: AsyncSession, *, workspace_id: str, data: WorkspaceSettingsFields
) -> WorkspaceSettingsPublic:
    version = (
        await session.execute(
            sa.text(
                "INSERT INTO workspace_setting AS s (workspace_id, allow_private_webhook_targets, "
                "max_surveys_per_period, period_days, quiet_days) VALUES (:w, :a, :m, :p, :q) "
                "ON CONFLICT (workspace_id) DO UPDATE SET allow_private_webhook_targets = :a, "
                "max_surveys_per_period = :m, period_days = :p, quiet_days = :q, version = s.version + 1, "
                "updated_at = now() RETURNING version"
            ),
            {
                "w": workspace_id,
                "a": data.allow_private_webhook_targets,
                "m": data.max_surveys_per_period,
                "p": data.period_days,
                "q": data.quiet_days,
            },
        )
    ).scalar_one()
    return WorkspaceSettingsPublic(**data.model_dump(), version=version)


_OPT_OUT = "RETURNING customer_external_id, reason, created_at, withdrawn_at, version"


async def add_opt_out(session: AsyncSession, *, workspace_id: str, data: OptOutCreate) -> OptOutPublic:
    """Record the opt-out, or again after a withdrawal (from now on)."""
    row = (
        await session.execute(
            sa.text(
                "INSERT INTO opt_out AS o (workspace_id, customer_external_id, reason) VALUES (:w, :c, :r) "
                "ON CONFLICT (workspace_id, customer_external_id) DO UPDATE SET "
                "reason = CASE WHEN o.withdrawn_at IS NULL THEN coalesce(:r, o.reason) ELSE :r END, "
                "created_at = CASE WHEN o.withdrawn_at IS NULL THEN o.created_at ELSE now() END, "
                f"withdrawn_at = NULL, version = o.version + 1 {_OPT_OUT}"
            ),
            {"w": workspace_id, "c": data.customer_external_id, "r": data.reason},
        )
    ).one()
    return OptOutPublic.model_validate(row._mapping)


async def withdraw_opt_out(
    session: AsyncSession, *, workspace_id: str, customer_external_id: str
) -> OptOutPublic | None:
    """Withdraw the customer's opt-out (its row stays, so its version keeps increasing); None if it has none."""
    row = (
        await session.execute(
            sa.text(
                "UPDATE opt_out SET withdrawn_at = now(), version = version + 1 "
                f"WHERE workspace_id = :w AND customer_external_id = :c AND withdrawn_at IS NULL {_OPT_OUT}"
            ),
            {"w": workspace_id, "c": customer_external_id},
        )
    ).first()
    return OptOutPublic.model_validate(row._mapping) if row else None


# Times are stored within bounds (services/common/timestamps.py), but a row written before the
# bounds, or by hand, may hold any time PostgreSQL can: the check reads at most the last time
# Python can hold, and a date past it is "not known" (null), never a 500.
_PYTHON_MAX = "TIMESTAMPTZ '9999-12-31 23:59:59.999999+00'"


def _days_after(at: datetime, days: int) -> datetime | None:
    try:
        return at + timedelta(days=days)
    except OverflowError:
        return None


async def eligibility(
    session: AsyncSession, *, workspace_id: str, customer_external_id: str, journey_key: str | None, now: datetime
) -> Eligibility:
    """Whether the CRM may survey this customer now, from the workspace's fatigue policy.

    The policy counts the customer's responses across all surveys (survey fatigue is per person);
    `journey_key` narrows the count to that journey's surveys when given.
    """
    policy = await get_settings(session, workspace_id=workspace_id)
    row = (
        await session.execute(
            sa.text(
                "SELECT EXISTS (SELECT 1 FROM opt_out WHERE workspace_id = :w AND customer_external_id = :c "
                " AND withdrawn_at IS NULL) AS out, "
                "(SELECT count(*) FROM response WHERE workspace_id = :w AND customer_external_id = :c "
                " AND submitted_at > :since AND (CAST(:j AS text) IS NULL OR journey_key = :j)) AS n, "
                f"(SELECT max(least(submitted_at, {_PYTHON_MAX})) FROM response WHERE workspace_id = :w "
                " AND customer_external_id = :c AND (CAST(:j AS text) IS NULL OR journey_key = :j)) AS last, "
                f"(SELECT min(least(submitted_at, {_PYTHON_MAX})) FROM (SELECT submitted_at FROM response "
                " WHERE workspace_id = :w AND customer_external_id = :c AND submitted_at > :since "
                " AND (CAST(:j AS text) IS NULL OR journey_key = :j) ORDER BY submitted_at DESC LIMIT :m) t) AS oldest"
            ),
            {
                "w": workspace_id,
                "c": customer_external_id,
                "j": journey_key,
                "since": now - timedelta(days=policy.period_days),
                "m": max(policy.max_surveys_per_period, 1),
            },
        )
    ).one()
    base = {"customer_external_id": customer_external_id, "responses_in_period": row.n, "last_response_at": row.last}
    if row.out:
        return Eligibility(eligible=False, reason="The customer opted out of surveys.", next_eligible_at=None, **base)
    if row.last is not None and policy.quiet_days and row.last > now - timedelta(days=policy.quiet_days):
        until = _days_after(row.last, policy.quiet_days)
        return Eligibility(
            eligible=False,
            reason=f"Quiet time: the last response was less than {policy.quiet_days} days ago.",
            next_eligible_at=until,
            **base,
        )
    if row.n >= policy.max_surveys_per_period:
        until = _days_after(row.oldest, policy.period_days) if row.oldest else None
        return Eligibility(
            eligible=False,
            reason=f"Survey limit reached: {row.n} responses in the last {policy.period_days} days "
            f"(at most {policy.max_surveys_per_period}).",
            next_eligible_at=until,
            **base,
        )
    return Eligibility(eligible=True, reason="Within the workspace's survey policy.", next_eligible_at=None, **base)
