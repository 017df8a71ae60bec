"""The webhook delivery worker: signs (Standard Webhooks) and posts due deliveries, retrying with
exponential backoff; the delivery rows are the log, so a restart loses nothing.

Claim, commit, then send: a short transaction leases due deliveries (their `next_attempt_at` moves past
the attempt's deadline, so no replica claims them meanwhile, and a replica that dies mid-attempt only
delays them), each is sent on its own task, and each attempt's outcome is recorded in its own short
transaction. No row lock or connection is held across an HTTP call, a slow receiver holds up only its
own deliveries (at most `webhook_subscription_concurrency` of them are in flight), and stopping lets
the attempts in flight finish and be recorded.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import orjson
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks import Webhook

from services.common.timestamps import iso
from services.common.worker import LoopWorker
from services.feedback.settings import FeedbackSettings
from services.feedback.store.webhooks import IPAddress, TargetRefused, target_address

log = structlog.get_logger(__name__)

# How much longer than an attempt's deadline its lease lasts: time to record its outcome.
_LEASE_MARGIN_SECONDS = 60.0
# The oldest due deliveries one claim looks at; subscriptions with no free slot are left out before.
_SCAN = 1000
_CLAIM = text(
    """
WITH candidate AS (
  SELECT d.id, d.subscription_id, d.next_attempt_at
  FROM webhook_delivery d JOIN webhook_subscription s ON s.id = d.subscription_id AND s.enabled
  WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND d.subscription_id <> ALL(CAST(:full AS uuid[]))
  ORDER BY d.next_attempt_at
  LIMIT :scan
), ranked AS (
  SELECT c.id, row_number() OVER (PARTITION BY c.subscription_id ORDER BY c.next_attempt_at, c.id) AS place,
    coalesce(f.free, :per_subscription) AS free
  FROM candidate c
  LEFT JOIN unnest(CAST(:busy AS uuid[]), CAST(:busy_free AS int[])) AS f(subscription_id, free)
    ON f.subscription_id = c.subscription_id
), claimed AS (
  -- the conditions again: a row another replica leased after this statement began is checked anew
  SELECT d.id FROM webhook_delivery d JOIN ranked r ON r.id = d.id AND r.place <= r.free
  WHERE d.status = 'pending' AND d.next_attempt_at <= now()
  ORDER BY d.next_attempt_at
  LIMIT :n
  FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_delivery d SET next_attempt_at = now() + make_interval(secs => CAST(:lease AS double precision))
FROM claimed c, webhook_subscription s LEFT JOIN workspace_setting ws ON ws.workspace_id = s.workspace_id
WHERE d.id = c.id AND s.id = d.subscription_id
RETURNING d.id, d.subscription_id, d.event_id, d.payload, d.attempts, d.next_attempt_at AS lease, s.url, s.secret,
  coalesce(ws.allow_private_webhook_targets, false) AS allow_private
"""
)
# Every attempt is logged. Its status and next attempt are set only while the lease is still this
# attempt's: a redelivery asked for meanwhile stands.
_RECORD = text(
    """
UPDATE webhook_delivery SET attempts = attempts + 1, log = log || CAST(:entry AS jsonb),
  last_status_code = :code, last_error = :error, delivered_at = coalesce(:delivered, delivered_at),
  status = CASE WHEN next_attempt_at = :lease THEN :status ELSE status END,
  next_attempt_at = CASE WHEN next_attempt_at <> :lease THEN next_attempt_at
    WHEN CAST(:wait AS double precision) IS NULL THEN NULL
    ELSE now() + make_interval(secs => CAST(:wait AS double precision)) END
WHERE id = :id
"""
)


def backoff(attempt: int, settings: FeedbackSettings) -> float:
    """Seconds before the next try after `attempt` failed tries: base · 2^(attempt − 1), capped."""
    return float(min(settings.webhook_backoff_cap_seconds, settings.webhook_backoff_base_seconds * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class Claim:
    id: UUID
    subscription_id: UUID
    event_id: UUID
    payload: bytes
    attempts: int
    lease: datetime
    url: str
    secret: str
    allow_private: bool


class DeliveryWorker(LoopWorker):
    name = "webhook-delivery"

    def __init__(self, engine: AsyncEngine, settings: FeedbackSettings) -> None:
        super().__init__(idle_seconds=settings.worker_poll_seconds)
        self._engine = engine
        self._settings = settings
        # No kept-alive connections: every attempt connects to the address checked for it, and no TLS
        # session negotiated for one host name carries a request for another on the same address.
        limits = httpx.Limits(max_connections=settings.webhook_concurrency, max_keepalive_connections=0)
        self._client = httpx.AsyncClient(
            timeout=settings.webhook_timeout_seconds, follow_redirects=False, limits=limits
        )
        self._in_flight: Counter[UUID] = Counter()  # per subscription
        self._tasks: set[asyncio.Task[None]] = set()
        self._claiming = asyncio.Lock()
        self._stopping = False

    async def stop(self) -> None:
        async with self._claiming:  # a claim that committed is sent: stop between two claims
            self._stopping = True
        await super().stop()
        await asyncio.gather(*self._tasks)  # each attempt has a deadline; its outcome is recorded
        await self._client.aclose()

    async def run_once(self) -> bool:
        async with self._claiming:
            if self._stopping:
                return False
            free = self._settings.webhook_concurrency - len(self._tasks)
            if free <= 0:
                return False  # a finished attempt wakes the loop
            claims = await self._claim(free)
            for claim in claims:
                self._in_flight[claim.subscription_id] += 1
                task = asyncio.create_task(self._deliver(claim), name=f"webhook-delivery-{claim.id}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return len(claims) == free

    async def _claim(self, n: int) -> list[Claim]:
        per_subscription = self._settings.webhook_subscription_concurrency
        busy = {s: per_subscription - k for s, k in self._in_flight.items() if k > 0}
        params: dict[str, Any] = {
            "n": n,
            "scan": _SCAN,
            "per_subscription": per_subscription,
            "full": [s for s, f in busy.items() if f <= 0],
            "busy": list(busy),
            "busy_free": list(busy.values()),
            "lease": self._settings.webhook_timeout_seconds + _LEASE_MARGIN_SECONDS,
        }
        async with self._engine.begin() as conn:
            rows = (await conn.execute(_CLAIM, params)).all()
        return [Claim(**r._mapping) for r in rows]

    async def _deliver(self, claim: Claim) -> None:
        try:
            outcome = await self._attempt(claim)
            for pause in (0.5, 2.0, None):  # the database may be briefly away; the lease covers it
                try:
                    async with self._engine.begin() as conn:
                        await conn.execute(_RECORD, outcome)
                    break
                except Exception:
                    if pause is None:
                        log.exception("webhook attempt not recorded", delivery_id=str(claim.id))
                        break
                    await asyncio.sleep(pause)
        finally:
            self._in_flight[claim.subscription_id] -= 1
            if self._in_flight[claim.subscription_id] <= 0:
                del self._in_flight[claim.subscription_id]
            self.wake()

    async def _attempt(self, claim: Claim) -> dict[str, Any]:
        attempt = claim.attempts + 1
        now = datetime.now(UTC)
        started = time.perf_counter()
        code: int | None = None
        error: str | None = None
        timeout = self._settings.webhook_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                # Checked at every attempt: the name may resolve elsewhere than when the webhook was made.
                address = await target_address(claim.url, allow_private=claim.allow_private)
                response = await self._client.send(self._request(claim, address, now))
            code = response.status_code
            if not 200 <= code < 300:
                error = f"HTTP {code}"
        except TargetRefused as refused:
            error = f"target refused: {refused}"
        except TimeoutError:
            error = f"no answer within {timeout:g} s"
        except httpx.HTTPError as exc:
            error = f"{exc.__class__.__name__}: {exc}"[:500]
        except Exception as exc:  # an attempt that fails oddly is still an attempt: logged and retried
            log.exception("webhook attempt failed unexpectedly", delivery_id=str(claim.id))
            error = f"{exc.__class__.__name__}: {exc}"[:500]
        duration = (time.perf_counter() - started) * 1000
        ok = error is None
        gave_up = not ok and attempt >= self._settings.webhook_max_attempts
        if not ok:
            log.info("webhook attempt failed", delivery_id=str(claim.id), attempt=attempt, error=error)
        return {
            "id": claim.id,
            "lease": claim.lease,
            "status": "succeeded" if ok else "failed" if gave_up else "pending",
            "wait": None if ok or gave_up else backoff(attempt, self._settings),
            "code": code,
            "error": error,
            "delivered": now if ok else None,
            "entry": orjson.dumps(
                [{"at": iso(now), "status_code": code, "error": error, "duration_ms": round(duration, 2)}]
            ).decode(),
        }

    def _request(self, claim: Claim, address: IPAddress, now: datetime) -> httpx.Request:
        """The signed POST to the checked address, with the URL's host as Host header and, for https,
        as the name TLS sends (SNI) and verifies the certificate for (httpx's `sni_hostname`)."""
        url = httpx.URL(claim.url)
        body = bytes(claim.payload)
        msg_id = str(claim.event_id)  # the event's id: the same in every attempt, so receivers dedupe on it
        headers = {
            "host": url.netloc.decode("ascii"),
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(claim.secret).sign(msg_id, now, body.decode()),
            "user-agent": "journeygraph-webhooks/0.1",
        }
        host = url.raw_host.decode("ascii")  # an IDN as its A-label, as TLS sends it
        extensions = {"sni_hostname": host} if url.scheme == "https" and host != str(address) else {}
        return self._client.build_request(
            "POST", url.copy_with(host=str(address)), content=body, headers=headers, extensions=extensions
        )
