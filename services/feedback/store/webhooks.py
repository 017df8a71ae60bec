"""Webhook subscriptions, the delivery log, and the fan-out of events to deliveries."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import re
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.errors import NotFound, Unprocessable
from services.common.events import encode_event
from services.common.ids import new_ids
from services.common.pagination import Page, keyset, page_of
from services.feedback.models import (
    DeliveryStatus,
    WebhookCreate,
    WebhookDelivery,
    WebhookSubscription,
    WebhookUpdate,
)
from services.feedback.models.webhooks import EVENT_TYPE_PATTERN

_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _blocked(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast or ip.is_unspecified


async def target_problem(url: str, *, allow_private: bool) -> str | None:
    """Why this URL may not receive webhooks (private/loopback targets need the workspace setting)."""
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        return "the URL must be http(s) with a host"
    if allow_private:
        return None
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443)
        except OSError:
            return f"the host {host!r} does not resolve"
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    blocked = [str(a) for a in addresses if _blocked(a)]
    if blocked:
        return (
            f"the host {host!r} is a private or loopback address ({', '.join(sorted(set(blocked)))}); "
            "the workspace setting allow_private_webhook_targets permits it"
        )
    return None


def _check_event_types(types: list[str]) -> None:
    bad = [t for t in types if not _EVENT_TYPE.match(t)]
    if bad:
        raise Unprocessable(
            f"Unknown event type pattern(s): {', '.join(bad)}; "
            "use e.g. feedback.response.submitted, feedback.case.* or *.",
            errors=[{"field": "event_types", "message": f"{t!r} is not an event type pattern"} for t in bad],
        )


async def _allow_private(session: AsyncSession, workspace_id: str) -> bool:
    value = (
        await session.execute(
            sa.text("SELECT allow_private_webhook_targets FROM workspace_setting WHERE workspace_id = :w"),
            {"w": workspace_id},
        )
    ).scalar_one_or_none()
    return bool(value)


async def create_webhook(session: AsyncSession, *, workspace_id: str, data: WebhookCreate) -> WebhookSubscription:
    _check_event_types(data.event_types)
    problem = await target_problem(str(data.url), allow_private=await _allow_private(session, workspace_id))
    if problem:
        raise Unprocessable(f"Webhook target refused: {problem}.", errors=[{"field": "url", "message": problem}])
    row = WebhookSubscription(  # type: ignore[call-arg]  # timestamps: server defaults
        workspace_id=workspace_id,
        url=str(data.url),
        event_types=sorted(set(data.event_types)),
        secret=data.secret or new_secret(),
        description=data.description,
        enabled=data.enabled,
    )
    session.add(row)
    await session.flush()
    await session.refresh(row)
    return row


async def get_webhook(session: AsyncSession, *, workspace_id: str, webhook_id: UUID) -> WebhookSubscription:
    row = (
        await session.execute(
            sa.select(WebhookSubscription).where(
                WebhookSubscription.id == webhook_id,  # type: ignore[arg-type]
                WebhookSubscription.workspace_id == workspace_id,  # type: ignore[arg-type]
            )
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"No webhook with id {webhook_id} in this workspace.")
    return row


async def list_webhooks(
    session: AsyncSession, *, workspace_id: str, cursor: str | None, limit: int
) -> Page[WebhookSubscription]:
    stmt = sa.select(WebhookSubscription).where(WebhookSubscription.workspace_id == workspace_id)  # type: ignore[arg-type]
    rows = (await session.execute(keyset(stmt, WebhookSubscription.id, cursor=cursor, limit=limit))).scalars().all()
    return page_of(list(rows), limit=limit, id_of=lambda r: r.id)


async def update_webhook(
    session: AsyncSession, *, workspace_id: str, webhook_id: UUID, data: WebhookUpdate
) -> WebhookSubscription:
    row = await get_webhook(session, workspace_id=workspace_id, webhook_id=webhook_id)
    changes = data.model_dump(exclude_unset=True)
    for field in ("url", "event_types", "enabled"):
        if field in changes and changes[field] is None:
            raise Unprocessable(f"{field} cannot be null.", errors=[{"field": field, "message": "cannot be null"}])
    if data.event_types is not None:
        _check_event_types(data.event_types)
        row.event_types = sorted(set(data.event_types))
    if data.url is not None:
        problem = await target_problem(str(data.url), allow_private=await _allow_private(session, workspace_id))
        if problem:
            raise Unprocessable(f"Webhook target refused: {problem}.", errors=[{"field": "url", "message": problem}])
        row.url = str(data.url)
    if "description" in changes:
        row.description = data.description
    if data.enabled is not None:
        row.enabled = data.enabled
    row.updated_at = sa.func.now()  # type: ignore[assignment]
    await session.flush()
    await session.refresh(row)
    return row


async def delete_webhook(session: AsyncSession, *, workspace_id: str, webhook_id: UUID) -> None:
    row = await get_webhook(session, workspace_id=workspace_id, webhook_id=webhook_id)
    await session.delete(row)
    await session.flush()


async def list_deliveries(
    session: AsyncSession,
    *,
    workspace_id: str,
    webhook_id: UUID,
    status: DeliveryStatus | None,
    cursor: str | None,
    limit: int,
) -> Page[WebhookDelivery]:
    await get_webhook(session, workspace_id=workspace_id, webhook_id=webhook_id)
    stmt = sa.select(WebhookDelivery).where(
        WebhookDelivery.workspace_id == workspace_id,  # type: ignore[arg-type]
        WebhookDelivery.subscription_id == webhook_id,  # type: ignore[arg-type]
    )
    if status:
        stmt = stmt.where(WebhookDelivery.status == status)  # type: ignore[arg-type]
    rows = (await session.execute(keyset(stmt, WebhookDelivery.id, cursor=cursor, limit=limit))).scalars().all()
    return page_of(list(rows), limit=limit, id_of=lambda r: r.id)


async def redeliver(
    session: AsyncSession, *, workspace_id: str, webhook_id: UUID, delivery_id: UUID
) -> WebhookDelivery:
    """Schedule a delivery again now (whatever its status); the log keeps every attempt."""
    await get_webhook(session, workspace_id=workspace_id, webhook_id=webhook_id)
    row = (
        await session.execute(
            sa.select(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,  # type: ignore[arg-type]
                WebhookDelivery.subscription_id == webhook_id,  # type: ignore[arg-type]
                WebhookDelivery.workspace_id == workspace_id,  # type: ignore[arg-type]
            )
            .with_for_update()
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"No delivery with id {delivery_id} for this webhook.")
    row.status = DeliveryStatus.pending
    row.next_attempt_at = sa.func.now()  # type: ignore[assignment]
    await session.flush()
    await session.refresh(row)
    return row


def delivery_insert(prefix: str = "", gate: str = "", *, keyed: bool = False) -> str:
    """The INSERT of `delivery_rows` given as parameters named `{prefix}ids`, ... (and `w`, `now`);
    `gate` (a WHERE clause) can hold it back, for a statement that writes more than deliveries.
    `keyed`: with `{prefix}keys`, the row each delivery's event is about, as `t.key` for the gate
    (see `outbox_insert`)."""
    key_array, key_column = (f", CAST(:{prefix}keys AS uuid[])", ", key") if keyed else ("", "")
    return f"""
INSERT INTO webhook_delivery (id, workspace_id, subscription_id, event_id, event_type, payload, status, attempts,
  next_attempt_at, log)
SELECT id, CAST(:w AS text), subscription_id, event_id, event_type, payload, 'pending', 0, :now, '[]'::jsonb
FROM unnest(CAST(:{prefix}ids AS uuid[]), CAST(:{prefix}subscriptions AS uuid[]), CAST(:{prefix}event_ids AS uuid[]),
  CAST(:{prefix}types AS text[]), CAST(:{prefix}payloads AS bytea[]){key_array})
  AS t(id, subscription_id, event_id, event_type, payload{key_column}) {gate}"""


_FAN_OUT = sa.text(delivery_insert())


def wants(event_types: list[str], subject: str) -> bool:
    family = subject.rsplit(".", 1)[0] + ".*"
    return "*" in event_types or subject in event_types or family in event_types


SUBSCRIPTIONS = sa.text("SELECT id, event_types FROM webhook_subscription WHERE workspace_id = :w AND enabled")


async def fan_out(
    session: AsyncSession,
    *,
    workspace_id: str,
    events: Sequence[tuple[str, BaseModel | dict[str, Any]]],
    now: datetime,
) -> int:
    """Pending deliveries for the workspace's subscriptions that want these events, written in the
    caller's transaction (so a delivery exists exactly when its change was committed). One indexed
    lookup when the workspace has no subscriptions."""
    subscriptions = await session.execute(SUBSCRIPTIONS, {"w": workspace_id})
    cols = delivery_rows(
        [(s.id, s.event_types) for s in subscriptions], workspace_id=workspace_id, events=events, now=now
    )
    if not cols["ids"]:
        return 0
    await session.execute(_FAN_OUT, {**cols, "w": workspace_id, "now": now})
    return len(cols["ids"])


def delivery_rows(
    subscriptions: Sequence[tuple[UUID, list[str]]],
    *,
    workspace_id: str,
    events: Sequence[tuple[str, BaseModel | dict[str, Any]]],
    now: datetime,
    keys: Sequence[Any] | None = None,
) -> dict[str, list[Any]]:
    """The `webhook_delivery` columns (ids, subscriptions, event_ids, types, payloads) of these events
    for the enabled subscriptions given as (id, event_types); with `keys` (one per event), also the
    `keys` column of `delivery_insert(keyed=True)`."""
    names = ("ids", "subscriptions", "event_ids", "types", "payloads", *(("keys",) if keys is not None else ()))
    cols: dict[str, list[Any]] = {k: [] for k in names}
    for n, (subject, data) in enumerate(events):
        targets = [sid for sid, event_types in subscriptions if wants(event_types, subject)]
        if not targets:
            continue
        # The webhook message id; stable across retries, so receivers dedupe on `webhook-id`.
        message_id, *delivery_ids = new_ids(1 + len(targets))
        payload = encode_event(event_id=message_id, type=subject, workspace_id=workspace_id, occurred_at=now, data=data)
        for subscription_id, delivery_id in zip(targets, delivery_ids, strict=True):
            cols["ids"].append(delivery_id)
            cols["subscriptions"].append(subscription_id)
            cols["event_ids"].append(message_id)
            cols["types"].append(subject)
            cols["payloads"].append(payload)
            if keys is not None:
                cols["keys"].append(keys[n])
    return cols
