"""Closed-loop rules and follow-up cases."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.errors import Conflict, NotFound, Unprocessable
from services.common.ids import new_ids
from services.common.pagination import Page, keyset, page_of
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

    def matches(self, response: dict[str, Any], themes: list[str] | None = None) -> str | None:
        """The reason this rule opens a case for the response, or None."""
        if self.survey_id is not None and response["survey_id"] != self.survey_id:
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


RULES = sa.text(
    "SELECT id, name, enabled, survey_id, touchpoint_key, metric, max_score, theme, assignee, "
    "due_in_hours FROM loop_rule WHERE workspace_id = :w ORDER BY priority, id"
)


async def active_rules(session: AsyncSession, *, workspace_id: str) -> list[Rule]:
    """The workspace's enabled rules by priority; the default rule while it has defined none."""
    rows = await session.execute(RULES, {"w": workspace_id})
    return rules_of([r._mapping for r in rows])


def rules_of(rows: Sequence[Mapping[Any, Any]]) -> list[Rule]:
    """The enabled rules of these `loop_rule` rows (in priority order); the default while there are none."""
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


def case_ctes(prefix: str = "", gate: str = "") -> str:
    """The CTEs `{prefix}input`, `{prefix}ins` (the opened cases) and `{prefix}hist` of the cases
    given as the parameters `case_params(cases, prefix)` (and `w`, `now`); `gate` (a WHERE clause)
    can hold them back, for a statement that writes more than cases."""
    p = prefix
    return f"""
{p}input AS (
  SELECT * FROM unnest(CAST(:{p}ids AS uuid[]), CAST(:{p}responses AS uuid[]), CAST(:{p}rules AS uuid[]),
    CAST(:{p}rule_names AS text[]), CAST(:{p}reasons AS text[]), CAST(:{p}assignees AS text[]),
    CAST(:{p}due AS timestamptz[]), CAST(:{p}surveys AS uuid[]), CAST(:{p}customers AS text[]),
    CAST(:{p}touchpoints AS text[]))
    AS t(id, response_id, rule_id, rule_name, reason, assignee, due_at, survey_id, customer_external_id,
         touchpoint_key)
), {p}ins AS (
  INSERT INTO follow_up_case (id, workspace_id, response_id, rule_id, rule_name, reason, status, assignee, due_at,
    survey_id, customer_external_id, touchpoint_key, created_at, updated_at)
  SELECT id, :w, response_id, rule_id, rule_name, reason, 'open', assignee, due_at, survey_id,
    customer_external_id, touchpoint_key, :now, :now FROM {p}input {gate}
  ON CONFLICT (workspace_id, response_id) DO NOTHING
  RETURNING id, reason
), {p}hist AS (
  INSERT INTO case_history (case_id, workspace_id, at, actor, action, changes)
  SELECT id, :w, :now, 'rule', 'opened', jsonb_build_object('reason', reason) FROM {p}ins
)"""


# parameter of `case_ctes` -> field of a case
_CASE_PARAMS = {
    "ids": "id",
    "responses": "response_id",
    "rules": "rule_id",
    "rule_names": "rule_name",
    "reasons": "reason",
    "assignees": "assignee",
    "due": "due_at",
    "surveys": "survey_id",
    "customers": "customer_external_id",
    "touchpoints": "touchpoint_key",
}


def case_params(cases: list[dict[str, Any]], prefix: str = "") -> dict[str, list[Any]]:
    """Cases (`case_rows`) as the array parameters of `case_ctes`."""
    return {f"{prefix}{param}": [case[field] for case in cases] for param, field in _CASE_PARAMS.items()}


_OPEN = sa.text(f"WITH {case_ctes()}\nSELECT id::text FROM ins")


async def open_cases(
    session: AsyncSession,
    *,
    workspace_id: str,
    responses: list[dict[str, Any]],
    rules: list[Rule],
    now: datetime,
    themes: dict[UUID, list[str]] | None = None,
) -> list[dict[str, Any]]:
    """Open one case per response that a rule matches (first rule wins); never two for one response.
    Returns the opened ones (`CasePublic` shape)."""
    cases = case_rows(responses, rules, now=now, themes=themes)
    if not cases:
        return []
    opened = set((await session.execute(_OPEN, {**case_params(cases), "w": workspace_id, "now": now})).scalars())
    return [case for case in cases if case["id"] in opened]


def case_rows(
    responses: list[dict[str, Any]],
    rules: list[Rule],
    *,
    now: datetime,
    themes: dict[UUID, list[str]] | None = None,
) -> list[dict[str, Any]]:
    """The cases the rules open for these responses (first matching rule wins), in the `CasePublic`
    shape they have once stored (dicts: a bulk call opens thousands, and events take them as they are)."""
    ids = iter(new_ids(len(responses)))
    cases: list[dict[str, Any]] = []
    for response in responses:
        response_themes = themes.get(response["id"]) if themes is not None else None
        for rule in rules:
            reason = rule.matches(response, response_themes)
            if reason is None:
                continue
            cases.append({
                "id": next(ids),
                "response_id": response["id"],
                "rule_id": rule.id,
                "rule_name": rule.name,
                "reason": reason,
                "status": CaseStatus.open,
                "assignee": rule.assignee,
                "due_at": now + timedelta(hours=rule.due_in_hours) if rule.due_in_hours else None,
                "survey_id": response["survey_id"],
                "customer_external_id": response["customer_external_id"],
                "touchpoint_key": response["touchpoint_key"],
                "created_at": now,
                "updated_at": now,
            })  # fmt: skip
            break
    return cases


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
    import orjson

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
    case = {
        "id": new_ids(1)[0],
        "response_id": response["id"],
        "rule_id": None,
        "rule_name": "Opened by hand",
        "reason": f"opened by {actor}",
        "status": CaseStatus.open,
        "assignee": assignee,
        "due_at": due_at,
        "survey_id": response["survey_id"],
        "customer_external_id": response["customer_external_id"],
        "touchpoint_key": response["touchpoint_key"],
        "created_at": now,
        "updated_at": now,
    }
    if not (await session.execute(_OPEN, {**case_params([case]), "w": workspace_id, "now": now})).first():
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
    if "status" in sent:
        if data.status is None:
            raise Unprocessable("status cannot be null.", errors=[{"field": "status", "message": "cannot be null"}])
        if data.status != before:
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
            "from": row.due_at.isoformat() if row.due_at else None,
            "to": data.due_at.isoformat() if data.due_at else None,
        }
        row.due_at = data.due_at
    if changes:
        row.updated_at = sa.func.now()  # type: ignore[assignment]
        await session.flush()
        await session.refresh(row)
        await _record(
            session, workspace_id=workspace_id, case_id=case_id, actor=actor, action="updated", changes=changes
        )
    return CasePublic.model_validate(row), before, bool(changes)


async def add_note(session: AsyncSession, *, workspace_id: str, case_id: UUID, actor: str, text: str) -> CaseDetail:
    await _case(session, workspace_id=workspace_id, case_id=case_id, lock=True)
    await _record(
        session, workspace_id=workspace_id, case_id=case_id, actor=actor, action="note", changes={}, note=text
    )
    await session.execute(sa.text("UPDATE follow_up_case SET updated_at = now() WHERE id = :c"), {"c": case_id})
    return await get_case(session, workspace_id=workspace_id, case_id=case_id)
