"""The hot path of `POST /v1/responses`: one new response written by one guarded statement.

The general path (`flows.record_responses`) runs six statements for one response: the idempotency
lookup, the survey, the rules, the webhook subscriptions, the write (`store/write.py`) and the
stored idempotent result, each ~60–155 µs of CPU before PostgreSQL sees it, in a session.
Here the survey version, the closed-loop rules and the webhook subscriptions come from a per-process
cache, and one statement on the driver connection (the general path's write with a guard in front)
writes the response, its rollups, its cases, its events, its deliveries and its Idempotency-Key —
but only while its guard holds: the survey is still active at the cached version, the rules and
subscriptions still have the cached fingerprint (so a change made through another replica is seen
at once), and the key was never used. When the guard fails, or the response_id exists, or an
answer is invalid, nothing is written, the cache entries are dropped, and the caller takes the
general path, which answers exactly as it always did.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
import sqlalchemy as sa
from cachetools import TTLCache
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import RawStatement
from services.feedback.models import ResponseCreate, ResponsePublic
from services.feedback.store.responses import prepare
from services.feedback.store.surveys import SurveyForIngest
from services.feedback.store.write import Followers, load_for_write, write_ctes, write_params

# Changes whenever a rule or an enabled subscription of the workspace is added, changed or removed.
_FINGERPRINT = """(
  (SELECT md5(coalesce(string_agg(r::text, ',' ORDER BY r.id), '')) FROM loop_rule r WHERE r.workspace_id = :w)
  || (SELECT md5(coalesce(string_agg(s.id::text || s.event_types::text, ',' ORDER BY s.id), ''))
      FROM webhook_subscription s WHERE s.workspace_id = :w AND s.enabled))"""

_SUBMIT = RawStatement(
    sa.text(
        f"""
WITH ok AS (
  SELECT 1 FROM survey s
  WHERE s.workspace_id = :w AND s.id = :survey_id AND s.status = 'active' AND s.version = :version
    AND {_FINGERPRINT} = :fingerprint
    AND NOT EXISTS (SELECT 1 FROM idempotency_key k WHERE k.workspace_id = :w AND k.key = :key)
), {write_ctes("WHERE EXISTS (SELECT 1 FROM ok)")},
kept AS (
  INSERT INTO idempotency_key (workspace_id, key, method, path, request_hash, status_code, response_body)
  SELECT :w, :key, 'POST', :path, :request_hash, 201, :body FROM ins WHERE CAST(:key AS text) IS NOT NULL
  ON CONFLICT (workspace_id, key) DO NOTHING
  RETURNING key
)
SELECT (SELECT count(*) FROM ins) AS stored, (SELECT count(*) FROM kept) AS kept
"""
    )
)
_CONTEXT = RawStatement(sa.text(f"SELECT {_FINGERPRINT} AS fingerprint"))


@dataclass(frozen=True, slots=True)
class WriteContext:
    """The workspace's rules and subscriptions as cached, with the fingerprint the guard checks."""

    fingerprint: str
    followers: Followers


class SubmitCache:
    """Per process; entries are checked by the statement's guard on every use, so staleness costs a
    fallback to the general path, never a wrong write. Bounded in size and age."""

    def __init__(self) -> None:
        self.surveys: TTLCache[tuple[str, UUID], SurveyForIngest] = TTLCache(maxsize=10_000, ttl=600)
        self.contexts: TTLCache[str, WriteContext] = TTLCache(maxsize=10_000, ttl=600)

    def forget(self, workspace_id: str, survey_id: UUID) -> None:
        self.surveys.pop((workspace_id, survey_id), None)
        self.contexts.pop(workspace_id, None)


class _Declined(Exception):
    """The guarded statement wrote nothing (or not all of it): roll back, take the general path."""


async def submit_one(
    engine: AsyncEngine,
    cache: SubmitCache,
    *,
    workspace_id: str,
    item: ResponseCreate,
    key: str | None,
    path: str,
    request_hash: str,
) -> bytes | None:
    """Store one new response; its JSON (status 201) or None when the general path must answer."""
    now = datetime.now(UTC)
    async with engine.connect() as connection:
        conn: asyncpg.Connection = (await connection.get_raw_connection()).driver_connection
        survey = cache.surveys.get((workspace_id, item.survey_id))
        context = cache.contexts.get(workspace_id)
        if survey is None or context is None:
            survey, context = await _load(conn, cache, workspace_id=workspace_id, survey_id=item.survey_id)
        prepared = prepare([item], {survey.id: survey} if survey else {}, allow_closed=False, now=now)
        if survey is None or prepared.results[0] is not None:
            return None  # refused (unknown, draft or closed survey, invalid answer): the general path words it
        public = ResponsePublic.model_validate(prepared.rows[0])
        body = public.__pydantic_serializer__.to_json(public)
        params = {
            **write_params(prepared, context.followers, workspace_id=workspace_id, now=now),
            "survey_id": survey.id,
            "version": survey.version,
            "fingerprint": context.fingerprint,
            "key": key,
            "path": path,
            "request_hash": request_hash,
            "body": body,
        }
        try:
            async with conn.transaction():
                result = await _SUBMIT.fetchrow(conn, params)
                assert result is not None
                if result["stored"] != 1 or (key is not None and result["kept"] != 1):
                    raise _Declined
        except Exception:
            # Rolled back; the general path answers (or fails) as it always did. Besides _Declined:
            # a value PostgreSQL refuses (the general path words the 422) or a lost connection (not
            # returned to the pool; the general path retries once on another).
            if conn.is_closed():
                await connection.invalidate()
            cache.forget(workspace_id, item.survey_id)
            return None
    return body


async def _load(
    conn: asyncpg.Connection, cache: SubmitCache, *, workspace_id: str, survey_id: UUID
) -> tuple[SurveyForIngest | None, WriteContext]:
    async with conn.transaction(isolation="repeatable_read", readonly=True):  # one snapshot for all
        fingerprint = await _CONTEXT.fetchrow(conn, {"w": workspace_id})
        surveys, followers = await load_for_write(conn, workspace_id=workspace_id, survey_ids=[survey_id])
    assert fingerprint is not None
    context = WriteContext(fingerprint=fingerprint["fingerprint"], followers=followers)
    cache.contexts[workspace_id] = context
    survey = surveys.get(survey_id)
    if survey is not None:
        cache.surveys[(workspace_id, survey_id)] = survey
    return survey, context
