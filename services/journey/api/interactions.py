"""REST routes of interactions and outcomes: one, bulk (per-item results) and NDJSON import."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.auth import Caller, caller_with
from services.common.db import SessionDep
from services.common.errors import PROBLEM_RESPONSES, Unprocessable
from services.common.idempotency import IdempotencyDep
from services.journey.api._batches import emit_items
from services.journey.models import BulkResult, EventBulk, InteractionIn, ItemResult, ItemStatus, OutcomeIn
from services.journey.store import interactions
from services.journey.store.interactions import Ingested

Writer = Annotated[Caller, caller_with("journeys:write")]

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES)


async def ingest(session: AsyncSession, *, workspace_id: str, kind: str, items: list[Any]) -> Ingested[Any]:
    """Store the items and write their events (customers created on the way included)."""
    if kind == "interaction":
        done: Ingested[Any] = await interactions.record_interactions(session, workspace_id=workspace_id, items=items)
    else:
        done = await interactions.record_outcomes(session, workspace_id=workspace_id, items=items)
    if done.created_customers:
        await emit_items(
            session, workspace_id=workspace_id, subject="journey.customer.upserted", items=done.created_customers
        )
    if done.stored:
        await emit_items(session, workspace_id=workspace_id, subject=f"journey.{kind}.recorded", items=done.stored)
    return done


async def _one(session: AsyncSession, idem: Any, *, workspace_id: str, kind: str, item: Any) -> Response:
    done = await ingest(session, workspace_id=workspace_id, kind=kind, items=[item])
    result = done.results[0]
    if result.status == ItemStatus.failed:
        errors = [{"field": f"body.{e.field}", "message": e.message} for e in result.errors or []]
        raise Unprocessable(f"The {kind} was not stored: " + "; ".join(e["message"] for e in errors), errors=errors)
    return await idem.respond(result, status_code=201 if result.status == ItemStatus.stored else 200)  # type: ignore[no-any-return]


_ONE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": ItemResult, "description": "A replay of a stored event id: acknowledged, not stored again."}
}


@router.post(
    "/interactions", status_code=201, response_model=ItemResult, responses=_ONE_RESPONSES, tags=["interactions"]
)
async def record_interaction(
    caller: Writer, idem: IdempotencyDep, session: SessionDep, body: InteractionIn
) -> Response:
    """Record one interaction (201 stored, 200 replayed event id)."""
    return await _one(session, idem, workspace_id=caller.workspace_id, kind="interaction", item=body)


@router.post("/interactions/bulk", status_code=200, response_model=BulkResult, tags=["interactions"])
async def record_interactions(caller: Writer, idem: IdempotencyDep, session: SessionDep, body: EventBulk) -> Response:
    """Record up to 10,000 interactions; an invalid item fails alone, replays are acknowledged."""
    done = await ingest(session, workspace_id=caller.workspace_id, kind="interaction", items=body.items)
    return await idem.respond(BulkResult(counts=done.counts, items=done.results), status_code=200)


@router.post("/outcomes", status_code=201, response_model=ItemResult, responses=_ONE_RESPONSES, tags=["outcomes"])
async def record_outcome(caller: Writer, idem: IdempotencyDep, session: SessionDep, body: OutcomeIn) -> Response:
    """Record one outcome (201 stored, 200 replayed event id)."""
    return await _one(session, idem, workspace_id=caller.workspace_id, kind="outcome", item=body)


@router.post("/outcomes/bulk", status_code=200, response_model=BulkResult, tags=["outcomes"])
async def record_outcomes(caller: Writer, idem: IdempotencyDep, session: SessionDep, body: EventBulk) -> Response:
    """Record up to 10,000 outcomes; an invalid item fails alone, replays are acknowledged."""
    done = await ingest(session, workspace_id=caller.workspace_id, kind="outcome", items=body.items)
    return await idem.respond(BulkResult(counts=done.counts, items=done.results), status_code=200)
