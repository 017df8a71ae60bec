"""Closed-loop rules and follow-up cases."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.common.errors import Conflict, NotFound, Unprocessable
from services.common.pagination import Page, keyset, page_of
from services.common.timestamps import iso
from services.feedback.models import (
    TRANSITIONS,
    CaseDetail,
    CaseEntry,
    CasePublic,
    CaseStatus,
    CaseUpdate,
    FollowUpCase,
    Metric,
)


@dataclass(frozen=True, slots=True)
class Rule:
    id: UUID | None  # None: the built-in default
    name: str
    survey_id: UUID | None
    touchpoint_key: str | None
    metric: str | None
    max_score: int | None
    theme: str | None
    assignee: str | None
    due_in_hours: int | None

    def matches(self, response: Mapping[str, Any], themes: list[str] | None = None) -> str | None:
        """The reason this rule opens a case for the response (its public form), or None."""
        if self.survey_id is not None and str(response["survey_id"]) != str(self.survey_id):
            return None
        if self.touchpoint_key is not None and response["touchpoint_key"] != self.touchpoint_key:
            return None
        reasons = []
        if self.metric is not None and self.max_score is not None:
            score = response.get(self.metric)
            if score is None or score > self.max_score:
                return None
            reasons.append(f"{self.metric.upper()} {score} ≤ {self.max_score}")
        if self.theme is not None:
            if themes is None or self.theme not in themes:
                return None
            reasons.append(f"comment theme {self.theme!r}")
        if not reasons:
            return None
        return f"{self.name}: {' and '.join(reasons)}"


DEFAULT_RULE = Rule(
    id=None,
    name="Default: detractor follow-up",
    survey_id=None,
    touchpoint_key=None,
    metric=Metric.nps.value,
    max_score=6,
    theme=None,
    assignee=None,
    due_in_hours=48,
)


_RULES = sa.text(
    "SELECT workspace_id, id, name, enabled, survey_id, touchpoint_key, metric, max_score, theme, assignee, "
    "due_in_hours FROM loop_rule WHERE workspace_id = ANY(:ws) ORDER BY workspace_id, priority, id"
)


async def rules_in_force(session: AsyncSession, *, workspace_ids: Sequence[str]) -> dict[str, list[Rule]]:
    """Each workspace's enabled rules by priority; the default rule while it has defined none."""
    rows: dict[str, list[Mapping[Any, Any]]] = {w: [] for w in workspace_ids}
    for r in await session.execute(_RULES, {"ws": list(workspace_ids)}):
        rows[r.workspace_id].append(r._mapping)
    return {w: _rules_of(found) for w, found in rows.items()}


def _rules_of(rows: Sequence[Mapping[Any, Any]]) -> list[Rule]:
    if not rows:
        return [DEFAULT_RULE]
    return [
        Rule(
            id=r["id"],
            name=r["name"],
            survey_id=r["survey_id"],
            touchpoint_key=r["touchpoint_key"],
            metric=r["metric"],
            max_score=r["max_score"],
            theme=r["theme"],
            assignee=r["assignee"],
            due_in_hours=r["due_in_hours"],
        )
        for r in rows
        if r["enabled"]
    ]


def case_for(
    response: Mapping[str, Any], rules: Sequence[Rule], *, at: datetime, themes: list[str] | None = None
) -> dict[str, Any] | None:
    """The case the first matching rule opens for a response (its public form, as the event's `data`),
    or None. Everything in it comes from the response, the rule and `at` (the triggering event's
    time), so the projection opens the same case whenever it applies the event."""
    for rule in rules:
        reason = rule.matches(response, themes)
        if reason is not None:
            due_at = at + timedelta(hours=rule.due_in_hours) if rule.due_in_hours else None
            return _case_of(response, at=at, rule_id=rule.id, rule_name=rule.name, reason=reason,
                            assignee=rule.assignee, due_at=due_at)  # fmt: skip
    return None


def _case_of(
    response: Mapping[str, Any],
    *,
    at: datetime,
    rule_id: UUID | None,
    rule_name: str,
    reason: str,
    assignee: str | None,
    due_at: datetime | None,
) -> dict[str, Any]:
    return {
        "id": str(response["id"]),  # one case per response, with the response's id
        "response_id": str(response["id"]),
        "rule_id": rule_id,
        "rule_name": rule_name,
        "reason": reason,
        "status": CaseStatus.open,
        "assignee": assignee,
        "due_at": due_at,
        "survey_id": str(response["survey_id"]),
        "customer_external_id": response["customer_external_id"],
        "touchpoint_key": response["touchpoint_key"],
        "version": 1,
        "created_at": at,
        "updated_at": at,
    }


_OPEN = sa.text(
    """
WITH input AS (
  SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:workspaces AS text[]), CAST(:rules AS uuid[]),
    CAST(:rule_names AS text[]), CAST(:reasons AS text[]), CAST(:assignees AS text[]), CAST(:due AS timestamptz[]),
    CAST(:surveys AS uuid[]), CAST(:customers AS text[]), CAST(:touchpoints AS text[]), CAST(:at AS timestamptz[]))
    AS t(id, workspace_id, rule_id, rule_name, reason, assignee, due_at, survey_id, customer_external_id,
         touchpoint_key, at)
), ins AS (
  INSERT INTO follow_up_case (id, workspace_id, response_id, rule_id, rule_name, reason, status, assignee, due_at,
    survey_id, customer_external_id, touchpoint_key, version, created_at, updated_at)
  SELECT id, workspace_id, id, rule_id, rule_name, reason, 'open', assignee, due_at, survey_id,
    customer_external_id, touchpoint_key, 1, at, at FROM input ORDER BY id
  ON CONFLICT DO NOTHING
  RETURNING id, workspace_id, reason, created_at
), hist AS (
  INSERT INTO case_history (case_id, workspace_id, at, actor, action, changes)
  SELECT id, workspace_id, created_at, :actor, 'opened', jsonb_build_object('reason', reason) FROM ins
)
SELECT id::text FROM ins
"""
)
# parameter of `_OPEN` -> field of a case
_CASE_PARAMS = {
    "ids": "id",
    "rules": "rule_id",
    "rule_names": "rule_name",
    "reasons": "reason",
    "assignees": "assignee",
    "due": "due_at",
    "surveys": "survey_id",
    "customers": "customer_external_id",
    "touchpoints": "touchpoint_key",
    "at": "created_at",
}


async def open_cases(
    session: AsyncSession, *, cases: Sequence[tuple[str, dict[str, Any]]], actor: str
) -> list[tuple[str, dict[str, Any]]]:
    """Open these (workspace id, case) pairs, each with its history entry, unless their response
    has a case already; returns the ones opened."""
    if not cases:
        return []
    params: dict[str, Any] = {"workspaces": [w for w, _ in cases], "actor": actor}
    for param, field in _CASE_PARAMS.items():
        params[param] = [case[field] for _, case in cases]
    opened = set((await session.execute(_OPEN, params)).scalars())
    return [(w, case) for w, case in cases if case["id"] in opened]


# Cases ------------------------------------------------------------------------------------------


async def _case(session: AsyncSession, *, workspace_id: str, case_id: UUID, lock: bool = False) -> FollowUpCase:
    stmt = sa.select(FollowUpCase).where(
        FollowUpCase.id == case_id,  # type: ignore[arg-type]
        FollowUpCase.workspace_id == workspace_id,  # type: ignore[arg-type]
    )
    if lock:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"No case with id {case_id} in this workspace.")
    return row


async def get_case(session: AsyncSession, *, workspace_id: str, case_id: UUID) -> CaseDetail:
    row = await _case(session, workspace_id=workspace_id, case_id=case_id)
    history = (
        await session.execute(
            sa.text(
                "SELECT at, actor, action, changes, note FROM case_history WHERE case_id = :c AND workspace_id = :w "
                "ORDER BY id"
            ),
            {"c": case_id, "w": workspace_id},
        )
    ).all()
    return CaseDetail(
        **CasePublic.model_validate(row).model_dump(),
        history=[CaseEntry.model_validate(h._mapping) for h in history],
    )


async def list_cases(
    session: AsyncSession,
    *,
    workspace_id: str,
    status: CaseStatus | None,
    assignee: str | None,
    touchpoint_key: str | None,
    customer_external_ids: Sequence[str] | None,
    cursor: str | None,
    limit: int,
) -> Page[FollowUpCase]:
    stmt = sa.select(FollowUpCase).where(FollowUpCase.workspace_id == workspace_id)  # type: ignore[arg-type]
    if status:
        stmt = stmt.where(FollowUpCase.status == status)  # type: ignore[arg-type]
    if assignee:
        stmt = stmt.where(FollowUpCase.assignee == assignee)  # type: ignore[arg-type]
    if touchpoint_key:
        stmt = stmt.where(FollowUpCase.touchpoint_key == touchpoint_key)  # type: ignore[arg-type]
    if customer_external_ids:
        # A case keeps its response's customer (a stored response never changes it), so ix_case_customer
        # answers this without a join. One array parameter: any number of customers is one statement.
        customers = sa.bindparam("customers", list(customer_external_ids), type_=ARRAY(sa.Text))
        stmt = stmt.where(col(FollowUpCase.customer_external_id) == sa.any_(customers))
    rows = (await session.execute(keyset(stmt, FollowUpCase.id, cursor=cursor, limit=limit))).scalars().all()
    return page_of(list(rows), limit=limit, id_of=lambda r: r.id)


async def _record(
    session: AsyncSession,
    *,
    workspace_id: str,
    case_id: UUID,
    actor: str,
    action: str,
    changes: dict[str, Any],
    note: str | None = None,
) -> None:
    await session.execute(
        sa.text(
            "INSERT INTO case_history (case_id, workspace_id, actor, action, changes, note) "
            "VALUES (:c, :w, :actor, :action, CAST(:changes AS jsonb), :note)"
        ),
        {"c": case_id, "w": workspace_id, "actor": actor, "action": action, "changes": _json(changes), "note": note},
    )


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def open_case_by_hand(
    session: AsyncSession,
    *,
    workspace_id: str,
    actor: str,
    response: dict[str, Any],
    assignee: str | None,
    due_at: datetime | None,
    note: str | None,
    now: datetime,
) -> CasePublic:
    case = _case_of(response, at=now, rule_id=None, rule_name="Opened by hand", reason=f"opened by {actor}",
                    assignee=assignee, due_at=due_at)  # fmt: skip
    if not await open_cases(session, cases=[(workspace_id, case)], actor=actor):
        raise Conflict(f"Response {response['id']} already has a case.")
    opened = CasePublic.model_validate(case)
    if note:
        await _record(
            session, workspace_id=workspace_id, case_id=opened.id, actor=actor, action="note", changes={}, note=note
        )
    return opened


async def update_case(
    session: AsyncSession, *, workspace_id: str, case_id: UUID, actor: str, data: CaseUpdate
) -> tuple[CasePublic, CaseStatus, bool]:
    """Apply the change; (case, status before, whether anything changed)."""
    row = await _case(session, workspace_id=workspace_id, case_id=case_id, lock=True)
    before = CaseStatus(row.status)
    changes: dict[str, Any] = {}
    sent = data.model_dump(exclude_unset=True)
    if data.status is not None and data.status != before:  # status is NotNull: left out or a status
        if data.status not in TRANSITIONS[before]:
            raise Unprocessable(
                f"A case cannot move from {before} to {data.status}; allowed: "
                f"{', '.join(sorted(TRANSITIONS[before]))}.",
                errors=[{"field": "status", "message": f"not allowed from {before}"}],
            )
        changes["status"] = {"from": before.value, "to": data.status.value}
        row.status = data.status
    if "assignee" in sent and data.assignee != row.assignee:
        changes["assignee"] = {"from": row.assignee, "to": data.assignee}
        row.assignee = data.assignee
    if "due_at" in sent and data.due_at != row.due_at:
        changes["due_at"] = {
            "from": iso(row.due_at) if row.due_at else None,
            "to": iso(data.due_at) if data.due_at else None,
        }
        row.due_at = data.due_at
    if changes:
        row.version += 1
        row.updated_at = sa.func.now()  # type: ignore[assignment]
        await session.flush()
        await session.refresh(row)
        await _record(
            session, workspace_id=workspace_id, case_id=case_id, actor=actor, action="updated", changes=changes
        )
    return CasePublic.model_validate(row), before, bool(changes)


async def add_note(session: AsyncSession, *, workspace_id: str, case_id: UUID, actor: str, text: str) -> CaseDetail:
    """Add a note; the case's version goes up (its history is part of it)."""
    row = await _case(session, workspace_id=workspace_id, case_id=case_id, lock=True)
    await _record(
        session, workspace_id=workspace_id, case_id=case_id, actor=actor, action="note", changes={}, note=text
    )
    row.version += 1
    row.updated_at = sa.func.now()  # type: ignore[assignment]
    await session.flush()
    await session.refresh(row)
    return await get_case(session, workspace_id=workspace_id, case_id=case_id)
