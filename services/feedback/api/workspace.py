"""Workspace settings, opt-outs and the survey-fatigue check."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Path, Query, Response

from services.common.db import SessionDep
from services.common.errors import NotFound
from services.common.idempotency import IdempotencyDep
from services.feedback.api._deps import Admin, Reader, Writer, make_router
from services.feedback.models import Eligibility, OptOutCreate, OptOutPublic, WorkspaceSettingsFields
from services.feedback.store import workspace

router = make_router()


@router.get("/settings", tags=["settings"])
async def get_settings(caller: Reader, session: SessionDep) -> WorkspaceSettingsFields:
    """The workspace's feedback settings (defaults until changed)."""
    return await workspace.get_settings(session, workspace_id=caller.workspace_id)


@router.put("/settings", tags=["settings"])
async def put_settings(caller: Admin, session: SessionDep, body: WorkspaceSettingsFields) -> WorkspaceSettingsFields:
    """Replace the workspace's feedback settings (needs the admin scope)."""
    return await workspace.put_settings(session, workspace_id=caller.workspace_id, data=body)


@router.post("/opt-outs", status_code=201, response_model=OptOutPublic, tags=["eligibility"])
async def add_opt_out(caller: Writer, idem: IdempotencyDep, session: SessionDep, body: OptOutCreate) -> Response:
    """Record that a customer must never be surveyed again."""
    return await idem.respond(await workspace.add_opt_out(session, workspace_id=caller.workspace_id, data=body))


@router.delete("/opt-outs/{customer}", status_code=204, tags=["eligibility"])
async def remove_opt_out(caller: Writer, session: SessionDep, customer: Annotated[str, Path(max_length=200)]) -> None:
    """Withdraw an opt-out (the customer opted in again)."""
    if not await workspace.remove_opt_out(session, workspace_id=caller.workspace_id, customer_external_id=customer):
        raise NotFound(f"Customer {customer!r} has no opt-out in this workspace.")


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
