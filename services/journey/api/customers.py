"""REST routes of customers: upsert one or thousands, read, list."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query, Response
from pydantic import ValidationError

from services.common.auth import Caller, caller_with
from services.common.bulk import BulkResult, ItemError, ItemResult, ItemStatus
from services.common.db import SessionDep
from services.common.errors import PROBLEM_RESPONSES
from services.common.idempotency import IdempotencyDep
from services.common.outbox import batch_changes, emit_many
from services.common.pagination import CursorQuery, LimitQuery, Page
from services.journey.events import CUSTOMER_UPSERTED
from services.journey.models import EXTERNAL_ID_PATTERN, CustomerBulk, CustomerBulkItem, CustomerPublic, CustomerUpsert
from services.journey.store import customers
from services.journey.store.interactions import status_counts

Reader = Annotated[Caller, caller_with("journeys:read")]
Writer = Annotated[Caller, caller_with("journeys:write")]
ExternalIdPath = Annotated[str, Path(pattern=EXTERNAL_ID_PATTERN, description="The CRM's id of the customer.")]

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES, tags=["customers"])


def _storable(text: str) -> str:
    """An unknown field's name goes into the error as sent: escape what a response cannot carry
    (NUL, unpaired surrogates), or building the error would fail the whole request."""
    return text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode()


@router.put("/customers/{external_id}", response_model=CustomerPublic, responses={201: {"model": CustomerPublic}})
async def upsert_customer(
    caller: Writer, session: SessionDep, external_id: ExternalIdPath, body: CustomerUpsert
) -> Response:
    """Create or replace a customer; the personas' rules are evaluated on the profile (201 created, 200 replaced)."""
    item = CustomerBulkItem(external_id=external_id, **body.model_dump())
    result = await customers.upsert_customers(session, workspace_id=caller.workspace_id, items=[item])
    public, created = result[external_id]
    await emit_many(session, workspace_id=caller.workspace_id, changes=batch_changes(CUSTOMER_UPSERTED, [public]))
    return Response(public.model_dump_json(), status_code=201 if created else 200, media_type="application/json")


@router.post("/customers/bulk", status_code=200, response_model=BulkResult)
async def upsert_customers(caller: Writer, idem: IdempotencyDep, session: SessionDep, body: CustomerBulk) -> Response:
    """Create or replace up to 10,000 customers; an invalid item fails alone (per-item results)."""
    results: list[ItemResult] = []
    valid: list[CustomerBulkItem] = []
    for index, raw in enumerate(body.items):
        ext = raw.get("external_id") if isinstance(raw, dict) else None
        key = ext[:200] if isinstance(ext, str) else None
        try:
            valid.append(CustomerBulkItem.model_validate(raw))
            results.append(ItemResult(index=index, key=key, status=ItemStatus.updated))
        except ValidationError as exc:
            errors = [
                ItemError(field=_storable(".".join(map(str, e["loc"]))) or "item", message=_storable(e["msg"]))
                for e in exc.errors()
            ]
            results.append(ItemResult(index=index, key=key, status=ItemStatus.failed, errors=errors))
    upserted = await customers.upsert_customers(session, workspace_id=caller.workspace_id, items=valid)
    for r in results:
        if r.status != ItemStatus.failed and r.key is not None:
            public, created = upserted[r.key]
            r.id, r.status = public.id, ItemStatus.created if created else ItemStatus.updated
    changes = batch_changes(CUSTOMER_UPSERTED, [p for p, _ in upserted.values()])
    await emit_many(session, workspace_id=caller.workspace_id, changes=changes)
    counts = status_counts(r.status for r in results)
    return await idem.respond(BulkResult(counts=counts, items=results), status_code=200)


@router.get("/customers/{external_id}")
async def get_customer(caller: Reader, session: SessionDep, external_id: ExternalIdPath) -> CustomerPublic:
    """Get a customer with the assigned persona and the rule that matched."""
    return await customers.get_customer(session, workspace_id=caller.workspace_id, external_id=external_id)


@router.get("/customers")
async def list_customers(
    caller: Reader,
    session: SessionDep,
    persona_id: Annotated[UUID | None, Query(description="Only customers assigned to this persona.")] = None,
    without_persona: Annotated[bool, Query(description="Only customers no persona matched.")] = False,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> Page[CustomerPublic]:
    """List customers (oldest first)."""
    return await customers.list_customers(
        session,
        workspace_id=caller.workspace_id,
        persona_id=persona_id,
        without_persona=without_persona,
        cursor=cursor,
        limit=limit,
    )
