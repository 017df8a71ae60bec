"""The webhook delivery worker: signs (Standard Webhooks) and posts due deliveries, retrying with
exponential backoff; the delivery rows are the log, so a restart loses nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks import Webhook

from services.common.worker import LoopWorker
from services.feedback.settings import FeedbackSettings
from services.feedback.store.webhooks import target_problem

log = structlog.get_logger(__name__)

# FOR UPDATE SKIP LOCKED: replicas share the table; a row is held by one worker for one attempt.
_CLAIM = text(
    """
SELECT d.id, d.event_id, d.event_type, d.payload, d.attempts, s.url, s.secret,
       coalesce(ws.allow_private_webhook_targets, false) AS allow_private
FROM webhook_delivery d
JOIN webhook_subscription s ON s.id = d.subscription_id
LEFT JOIN workspace_setting ws ON ws.workspace_id = d.workspace_id
WHERE d.status = 'pending' AND d.next_attempt_at <= now()
ORDER BY d.next_attempt_at
LIMIT :n
FOR UPDATE OF d SKIP LOCKED
"""
)
_RECORD = text(
    """
UPDATE webhook_delivery SET attempts = attempts + 1, status = :status, next_attempt_at = :next,
  last_status_code = :code, last_error = :error, delivered_at = :delivered,
  log = log || CAST(:entry AS jsonb)
WHERE id = :id
"""
)


def backoff(attempt: int, settings: FeedbackSettings) -> float:
    """Seconds before the next try after `attempt` failed tries: base · 2^(attempt − 1), capped."""
    return float(min(settings.webhook_backoff_cap_seconds, settings.webhook_backoff_base_seconds * 2 ** (attempt - 1)))


class DeliveryWorker(LoopWorker):
    name = "webhook-delivery"

    def __init__(self, engine: AsyncEngine, settings: FeedbackSettings, *, batch_size: int = 20) -> None:
        super().__init__(idle_seconds=settings.worker_poll_seconds)
        self._engine = engine
        self._settings = settings
        self._batch = batch_size
        self._client = httpx.AsyncClient(timeout=settings.webhook_timeout_seconds, follow_redirects=False)
        self.on_attempt: Callable[[dict[str, Any]], None] | None = None

    async def stop(self) -> None:
        await super().stop()
        await self._client.aclose()

    async def run_once(self) -> bool:
        return await self.deliver_due() == self._batch

    async def deliver_due(self) -> int:
        async with self._engine.begin() as conn:
            rows = (await conn.execute(_CLAIM, {"n": self._batch})).all()
            if not rows:
                return 0
            outcomes = await asyncio.gather(*(self._send(r) for r in rows))
            await conn.execute(_RECORD, [o for o in outcomes])
        return len(rows)

    async def _send(self, row: Any) -> dict[str, Any]:
        attempt = row.attempts + 1
        now = datetime.now(UTC)
        started = time.perf_counter()
        code: int | None = None
        error: str | None = None
        # Checked again at send time: the name may resolve elsewhere than when the webhook was created.
        problem = await target_problem(row.url, allow_private=row.allow_private)
        if problem:
            error = f"target refused: {problem}"
        else:
            body = bytes(row.payload)
            msg_id = str(row.event_id)  # the event's id: the same in every attempt, so receivers dedupe on it
            signature = Webhook(row.secret).sign(msg_id, now, body.decode())
            headers = {
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": signature,
                "user-agent": "journeygraph-webhooks/0.1",
            }
            try:
                response = await self._client.post(row.url, content=body, headers=headers)
                code = response.status_code
                if not 200 <= code < 300:
                    error = f"HTTP {code}"
            except httpx.HTTPError as exc:
                error = f"{exc.__class__.__name__}: {exc}"[:500]
        duration = (time.perf_counter() - started) * 1000
        ok = error is None
        gave_up = not ok and attempt >= self._settings.webhook_max_attempts
        outcome = {
            "id": row.id,
            "status": "succeeded" if ok else "failed" if gave_up else "pending",
            "next": None if ok or gave_up else now + timedelta(seconds=backoff(attempt, self._settings)),
            "code": code,
            "error": error,
            "delivered": now if ok else None,
            "entry": orjson.dumps(
                [{"at": now.isoformat(), "status_code": code, "error": error, "duration_ms": round(duration, 2)}]
            ).decode(),
        }
        if not ok:
            log.info("webhook attempt failed", delivery_id=str(row.id), attempt=attempt, error=error)
        return outcome
