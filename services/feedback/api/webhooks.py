"""Webhook subscriptions, their delivery log and manual redelivery."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Path, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.db import SessionDep
from services.common.idempotency import IdempotencyDep
from services.common.outbox import emit
from services.common.pagination import CursorQuery, LimitQuery, Page
from services.feedback.api._deps import Admin, Reader, Writer, make_router
from services.feedback.events import WEBHOOK_CREATED, WEBHOOK_DELETED, WEBHOOK_UPDATED
from services.feedback.models import (
    DeliveryPublic,
    DeliveryStatus,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
    WebhookUpdate,
)
from services.feedback.store import webhooks

WebhookId = Annotated[UUID, Path(description="The webhook subscription's id.")]
DeliveryId = Annotated[UUID, Path(description="The delivery's id.")]
router = make_router()


async def _emit(session: AsyncSession, workspace_id: str, type: str, webhook: WebhookPublic) -> None:
    """Publish the subscription's change: its public state, never its secret."""
    await emit(session, workspace_id=workspace_id, type=type, data=webhook, aggregate_id=webhook.id,
               version=webhook.version)  # fmt: skip


@router.post("/webhooks", status_code=201, response_model=WebhookCreated, tags=["webhooks"])
async def create_webhook(caller: Admin, idem: IdempotencyDep, session: SessionDep, body: WebhookCreate) -> Response:
    """Subscribe a URL to events (scope `admin`); deliveries are signed (Standard Webhooks) with the secret."""
    row = await webhooks.create_webhook(session, workspace_id=caller.workspace_id, data=body)
    await _emit(session, caller.workspace_id, WEBHOOK_CREATED, WebhookPublic.model_validate(row))
    return await idem.respond(WebhookCreated.model_validate(row))


@router.get("/webhooks", tags=["webhooks"])
async def list_webhooks(
    caller: Reader, session: SessionDep, cursor: CursorQuery = None, limit: LimitQuery = 50
) -> Page[WebhookPublic]:
    """List webhook subscriptions."""
    page = await webhooks.list_webhooks(session, workspace_id=caller.workspace_id, cursor=cursor, limit=limit)
    return Page[WebhookPublic].model_validate(page, from_attributes=True)


@router.get("/webhooks/{webhook_id}", tags=["webhooks"])
async def get_webhook(caller: Reader, session: SessionDep, webhook_id: WebhookId) -> WebhookPublic:
    """Get a webhook subscription (the secret is shown only at creation)."""
    row = await webhooks.get_webhook(session, workspace_id=caller.workspace_id, webhook_id=webhook_id)
    return WebhookPublic.model_validate(row)


@router.patch("/webhooks/{webhook_id}", tags=["webhooks"])
async def update_webhook(
    caller: Admin, session: SessionDep, webhook_id: WebhookId, body: WebhookUpdate
) -> WebhookPublic:
    """Change a webhook subscription (scope `admin`)."""
    row = await webhooks.update_webhook(session, workspace_id=caller.workspace_id, webhook_id=webhook_id, data=body)
    webhook = WebhookPublic.model_validate(row)
    await _emit(session, caller.workspace_id, WEBHOOK_UPDATED, webhook)
    return webhook


@router.delete("/webhooks/{webhook_id}", status_code=204, tags=["webhooks"])
async def delete_webhook(caller: Admin, session: SessionDep, webhook_id: WebhookId) -> None:
    """Delete a webhook subscription and its delivery log (scope `admin`)."""
    last = await webhooks.delete_webhook(session, workspace_id=caller.workspace_id, webhook_id=webhook_id)
    await _emit(session, caller.workspace_id, WEBHOOK_DELETED, last)


@router.get("/webhooks/{webhook_id}/deliveries", tags=["webhooks"])
async def list_deliveries(
    caller: Reader,
    session: SessionDep,
    webhook_id: WebhookId,
    status: Annotated[DeliveryStatus | None, Query()] = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> Page[DeliveryPublic]:
    """The delivery log of a subscription: every event, its attempts and their outcomes."""
    page = await webhooks.list_deliveries(
        session, workspace_id=caller.workspace_id, webhook_id=webhook_id, status=status, cursor=cursor, limit=limit
    )
    return Page[DeliveryPublic].model_validate(page, from_attributes=True)


@router.post(
    "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryPublic,
    tags=["webhooks"],
)
async def redeliver(
    caller: Writer,
    idem: IdempotencyDep,
    session: SessionDep,
    request: Request,
    webhook_id: WebhookId,
    delivery_id: DeliveryId,
) -> Response:
    """Send a delivery again now (also one that failed for good or already succeeded)."""
    row = await webhooks.redeliver(
        session, workspace_id=caller.workspace_id, webhook_id=webhook_id, delivery_id=delivery_id
    )
    worker = getattr(request.app.state, "delivery_worker", None)
    if worker is not None:
        worker.wake()  # the commit happens before the response; the worker also polls
    return await idem.respond(DeliveryPublic.model_validate(row), status_code=202)
