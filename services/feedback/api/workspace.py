"""Workspace settings, opt-outs and the survey-fatigue check."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Path, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.db import SessionDep
from services.common.errors import NotFound, problems
from services.common.idempotency import IdempotencyDep
from services.common.outbox import emit
from services.feedback.api._deps import Admin, Reader, Writer, make_router
from services.feedback.events import OPT_OUT_ADDED, OPT_OUT_WITHDRAWN, SETTINGS_UPDATED
from services.feedback.models import (
    Eligibility,
    OptOutCreate,
    OptOutPublic,
    WorkspaceSettingsFields,
    WorkspaceSettingsPublic,
)
from services.feedback.store import workspace

router = make_router()


@router.get("/settings", tags=["settings"])
async def get_settings(caller: Reader, session: SessionDep) -> WorkspaceSettingsPublic:
    """The workspace's feedback settings (defaults until changed)."""
    return await workspace.get_settings(session, workspace_id=caller.workspace_id)


@router.put("/settings", tags=["settings"])
async def put_settings(caller: Admin, session: SessionDep, body: WorkspaceSettingsFields) -> WorkspaceSettingsPublic:
    """Replace the workspace's feedback settings (needs the admin scope)."""
    settings = await workspace.put_settings(session, workspace_id=caller.workspace_id, data=body)
    await emit(session, workspace_id=caller.workspace_id, type=SETTINGS_UPDATED, data=settings,
               aggregate_id=caller.workspace_id, version=settings.version)  # fmt: skip
    return settings


@router.post("/opt-outs", status_code=201, response_model=OptOutPublic, tags=["eligibility"], responses=problems(409))
async def add_opt_out(caller: Writer, idem: IdempotencyDep, session: SessionDep, body: OptOutCreate) -> Response:
    """Record that a customer must never be surveyed again."""
    opt_out = await workspace.add_opt_out(session, workspace_id=caller.workspace_id, data=body)
    await _emit(session, caller.workspace_id, OPT_OUT_ADDED, opt_out)
    return await idem.respond(opt_out)


@router.delete("/opt-outs/{customer}", status_code=204, tags=["eligibility"], responses=problems(404))
async def remove_opt_out(caller: Writer, session: SessionDep, customer: Annotated[str, Path(max_length=200)]) -> None:
    """Withdraw an opt-out (the customer opted in again)."""
    opt_out = await workspace.withdraw_opt_out(session, workspace_id=caller.workspace_id, customer_external_id=customer)
    if opt_out is None:
        raise NotFound(f"Customer {customer!r} has no opt-out in this workspace.")
    await _emit(session, caller.workspace_id, OPT_OUT_WITHDRAWN, opt_out)


async def _emit(session: AsyncSession, workspace_id: str, type: str, opt_out: OptOutPublic) -> None:
    # An opt-out's aggregate is the customer: its external id is the key it is known by.
    await emit(session, workspace_id=workspace_id, type=type, data=opt_out,
               aggregate_id=opt_out.customer_external_id, version=opt_out.version)  # fmt: skip


@router.get("/eligibility", tags=["eligibility"])
async def check_eligibility(
    caller: Reader,
    session: SessionDep,
    customer: Annotated[str, Query(min_length=1, max_length=200, description="The customer's external_id.")],
    journey: Annotated[str | None, Query(max_length=80, description="Count only this journey's responses.")] = None,
) -> Eligibility:
    """May the CRM survey this customer now? With the reason."""
    return await workspace.eligibility(
        session,
        workspace_id=caller.workspace_id,
        customer_external_id=customer,
        journey_key=journey,
        now=datetime.now(UTC),
    )
