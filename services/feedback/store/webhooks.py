"""Webhook subscriptions, the delivery log, and the deliveries projection of events."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import re
import secrets
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.errors import NotFound, Unprocessable
from services.common.events import Event, encode_event
from services.common.ids import new_ids
from services.common.pagination import Page, keyset, page_of
from services.feedback.models import (
    DeliveryStatus,
    WebhookCreate,
    WebhookDelivery,
    WebhookPublic,
    WebhookSubscription,
    WebhookUpdate,
)
from services.feedback.models.webhooks import EVENT_TYPE_PATTERN

_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(Exception):
    """A webhook URL that may not receive deliveries; the message says why."""


def _blocked(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address of `host` (an IP literal is its own). Webhook targets are resolved only here, once
    per check, and the delivery connects to an address this returned: a name cannot resolve to a
    checked address for the check and to another for the connection (DNS rebinding)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


async def target_address(url: str, *, allow_private: bool) -> IPAddress:
    """The address to send to `url` at: its host resolved now, every address it has checked (private,
    loopback and link-local ones need the workspace setting). Raises TargetRefused."""
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise TargetRefused("the URL must be http(s) with a host")
    try:
        addresses = await resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    except (OSError, UnicodeError, ValueError):
        addresses = []
    if not addresses:
        raise TargetRefused(f"the host {host!r} does not resolve")
    blocked = [str(a) for a in addresses if _blocked(a)]
    if blocked and not allow_private:
        raise TargetRefused(
            f"the host {host!r} is a private or loopback address ({', '.join(sorted(set(blocked)))}); "
            "the workspace setting allow_private_webhook_targets permits it"
        )
    return addresses[0]


async def target_problem(url: str, *, allow_private: bool) -> str | None:
    """Why this URL may not receive webhooks, or None."""
    try:
        await target_address(url, allow_private=allow_private)
    except TargetRefused as refused:
        return str(refused)
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
    row.version += 1
    row.updated_at = sa.func.now()  # type: ignore[assignment]
    await session.flush()
    await session.refresh(row)
    return row


async def delete_webhook(session: AsyncSession, *, workspace_id: str, webhook_id: UUID) -> WebhookPublic:
    """Delete the subscription and its delivery log; returns its last state with the version of its deletion."""
    row = await get_webhook(session, workspace_id=workspace_id, webhook_id=webhook_id)
    last = WebhookPublic.model_validate(row).model_copy(update={"version": row.version + 1})
    await session.delete(row)
    await session.flush()
    return last


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


def wants(event_types: list[str], subject: str) -> bool:
    family = subject.rsplit(".", 1)[0] + ".*"
    return "*" in event_types or subject in event_types or family in event_types


_SUBSCRIBERS = sa.text(
    "SELECT id, workspace_id, event_types, created_at FROM webhook_subscription "
    "WHERE workspace_id = ANY(:ws) AND enabled ORDER BY id"
)
_DELIVER = sa.text(
    """
INSERT INTO webhook_delivery (id, workspace_id, subscription_id, event_id, event_type, payload, status, attempts,
  next_attempt_at, log)
SELECT id, workspace_id, subscription_id, event_id, event_type, payload, 'pending', 0, now(), '[]'::jsonb
FROM unnest(CAST(:ids AS uuid[]), CAST(:workspaces AS text[]), CAST(:subscriptions AS uuid[]),
  CAST(:event_ids AS uuid[]), CAST(:types AS text[]), CAST(:payloads AS bytea[]))
  AS t(id, workspace_id, subscription_id, event_id, event_type, payload)
ON CONFLICT (subscription_id, event_id) DO NOTHING
"""
)


async def schedule_deliveries(session: AsyncSession, *, events: Sequence[Event[dict[str, Any]]]) -> None:
    """A pending delivery of each event for every enabled subscription of its workspace that wants
    its type and existed when it occurred. The delivery is the event as published, and its
    `event_id` (the `webhook-id` of every attempt) is the event's id: one delivery per subscription
    and event, however often the event is applied."""
    if not events:
        return
    subscribers: dict[str, list[Any]] = {}
    for s in await session.execute(_SUBSCRIBERS, {"ws": list({e.workspace_id for e in events})}):
        subscribers.setdefault(s.workspace_id, []).append(s)
    cols: dict[str, list[Any]] = {k: [] for k in ("workspaces", "subscriptions", "event_ids", "types", "payloads")}
    for event in events:
        targets = [
            s.id
            for s in subscribers.get(event.workspace_id, [])
            if s.created_at <= event.occurred_at and wants(s.event_types, event.type)
        ]
        if not targets:
            continue
        payload = encode_event(
            event_id=event.id,
            type=event.type,
            workspace_id=event.workspace_id,
            occurred_at=event.occurred_at,
            data=event.data,
            aggregate_id=event.aggregate_id,
            version=event.version,
        )
        for subscription_id in targets:
            cols["workspaces"].append(event.workspace_id)
            cols["subscriptions"].append(subscription_id)
            cols["event_ids"].append(event.id)
            cols["types"].append(event.type)
            cols["payloads"].append(payload)
    if cols["subscriptions"]:
        await session.execute(_DELIVER, {**cols, "ids": new_ids(len(cols["subscriptions"]))})
