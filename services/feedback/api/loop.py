"""The closed loop: rules and follow-up cases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import Path, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.db import SessionDep
from services.common.errors import problems
from services.common.idempotency import IdempotencyDep
from services.common.outbox import emit
from services.common.pagination import CursorQuery, LimitQuery, Page
from services.feedback.api._deps import Reader, Writer, make_router
from services.feedback.events import (
    CASE_CLOSED,
    CASE_OPENED,
    CASE_UPDATED,
    RULE_CREATED,
    RULE_DELETED,
    RULE_UPDATED,
)
from services.feedback.models import (
    CaseCreate,
    CaseDetail,
    CasePublic,
    CaseStatus,
    CaseUpdate,
    NoteCreate,
    RuleCreate,
    RulePublic,
    RuleUpdate,
)
from services.feedback.models._base import ExternalId
from services.feedback.store import loop, responses, rules

RuleId = Annotated[UUID, Path(description="The rule's id.")]
CaseId = Annotated[UUID, Path(description="The case's id.")]
CUSTOMERS_HELP = (
    "Only the cases of these customers' responses: the customers' external_id (repeatable, up to 100; "
    "`?customer=C-1&customer=C-2`)."
)
router = make_router()


async def _emit_rule(session: AsyncSession, workspace_id: str, type: str, rule: RulePublic) -> None:
    await emit(session, workspace_id=workspace_id, type=type, data=rule, aggregate_id=rule.id, version=rule.version)


async def _emit_case(session: AsyncSession, workspace_id: str, type: str, case: CasePublic) -> None:
    await emit(session, workspace_id=workspace_id, type=type, data=case, aggregate_id=case.id, version=case.version)


@router.post("/loop-rules", status_code=201, response_model=RulePublic, tags=["closed loop"], responses=problems(409))
async def create_rule(caller: Writer, idem: IdempotencyDep, session: SessionDep, body: RuleCreate) -> Response:
    """Add a rule that opens follow-up cases (once a workspace has rules, the default NPS ≤ 6 rule is off)."""
    rule = RulePublic.model_validate(await rules.create_rule(session, workspace_id=caller.workspace_id, data=body))
    await _emit_rule(session, caller.workspace_id, RULE_CREATED, rule)
    return await idem.respond(rule)


@router.get("/loop-rules", tags=["closed loop"])
async def list_rules(
    caller: Reader, session: SessionDep, cursor: CursorQuery = None, limit: LimitQuery = 50
) -> Page[RulePublic]:
    """The workspace's rules, oldest first; they are checked by priority, then age (none: the default NPS ≤ 6
    rule applies)."""
    page = await rules.list_rules(session, workspace_id=caller.workspace_id, cursor=cursor, limit=limit)
    return Page[RulePublic].model_validate(page, from_attributes=True)


@router.get("/loop-rules/{rule_id:uuid}", tags=["closed loop"], responses=problems(404))
async def get_rule(caller: Reader, session: SessionDep, rule_id: RuleId) -> RulePublic:
    """Get a rule."""
    return RulePublic.model_validate(await rules.get_rule(session, workspace_id=caller.workspace_id, rule_id=rule_id))


@router.patch("/loop-rules/{rule_id:uuid}", tags=["closed loop"], responses=problems(404))
async def update_rule(caller: Writer, session: SessionDep, rule_id: RuleId, body: RuleUpdate) -> RulePublic:
    """Change a rule."""
    row = await rules.update_rule(session, workspace_id=caller.workspace_id, rule_id=rule_id, data=body)
    rule = RulePublic.model_validate(row)
    await _emit_rule(session, caller.workspace_id, RULE_UPDATED, rule)
    return rule


@router.delete("/loop-rules/{rule_id:uuid}", status_code=204, tags=["closed loop"], responses=problems(404))
async def delete_rule(caller: Writer, session: SessionDep, rule_id: RuleId) -> None:
    """Delete a rule (cases it opened stay)."""
    rule = await rules.delete_rule(session, workspace_id=caller.workspace_id, rule_id=rule_id)
    await _emit_rule(session, caller.workspace_id, RULE_DELETED, rule)


@router.post("/cases", status_code=201, response_model=CasePublic, tags=["closed loop"], responses=problems(409))
async def open_case(caller: Writer, idem: IdempotencyDep, session: SessionDep, body: CaseCreate) -> Response:
    """Open a follow-up case by hand for a response."""
    response = await responses.referenced_response(session, workspace_id=caller.workspace_id, id=body.response_id)
    case = await loop.open_case_by_hand(
        session,
        workspace_id=caller.workspace_id,
        actor=caller.subject,
        response=response,
        assignee=body.assignee,
        due_at=body.due_at,
        note=body.note,
        now=datetime.now(UTC),
    )
    await _emit_case(session, caller.workspace_id, CASE_OPENED, case)
    return await idem.respond(case)


@router.get("/cases", tags=["closed loop"])
async def list_cases(
    caller: Reader,
    session: SessionDep,
    status: Annotated[CaseStatus | None, Query()] = None,
    assignee: Annotated[str | None, Query(max_length=200)] = None,
    touchpoint: Annotated[str | None, Query(max_length=80)] = None,
    customer: Annotated[list[ExternalId] | None, Query(max_length=100, description=CUSTOMERS_HELP)] = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> Page[CasePublic]:
    """List follow-up cases in the order their responses were stored (a case has its response's id)."""
    page = await loop.list_cases(
        session,
        workspace_id=caller.workspace_id,
        status=status,
        assignee=assignee,
        touchpoint_key=touchpoint,
        customer_external_ids=customer,
        cursor=cursor,
        limit=limit,
    )
    return Page[CasePublic].model_validate(page, from_attributes=True)


@router.get("/cases/{case_id:uuid}", tags=["closed loop"], responses=problems(404))
async def get_case(caller: Reader, session: SessionDep, case_id: CaseId) -> CaseDetail:
    """Get a case with its history."""
    return await loop.get_case(session, workspace_id=caller.workspace_id, case_id=case_id)


@router.patch("/cases/{case_id:uuid}", tags=["closed loop"], responses=problems(404))
async def update_case(caller: Writer, session: SessionDep, case_id: CaseId, body: CaseUpdate) -> CaseDetail:
    """Move a case (open → in_progress → closed; closed → open reopens), assign it, set its due date."""
    case, before, changed = await loop.update_case(
        session, workspace_id=caller.workspace_id, case_id=case_id, actor=caller.subject, data=body
    )
    if changed:
        closed = case.status != before and case.status == CaseStatus.closed
        await _emit_case(session, caller.workspace_id, CASE_CLOSED if closed else CASE_UPDATED, case)
    return await loop.get_case(session, workspace_id=caller.workspace_id, case_id=case_id)


@router.post(
    "/cases/{case_id:uuid}/notes",
    status_code=201,
    response_model=CaseDetail,
    tags=["closed loop"],
    responses=problems(404, 409),
)
async def add_case_note(
    caller: Writer, idem: IdempotencyDep, session: SessionDep, case_id: CaseId, body: NoteCreate
) -> Response:
    """Add a note to a case's history."""
    case = await loop.add_note(
        session, workspace_id=caller.workspace_id, case_id=case_id, actor=caller.subject, text=body.text
    )
    await _emit_case(session, caller.workspace_id, CASE_UPDATED, CasePublic.model_validate(case.model_dump()))
    return await idem.respond(case)
