"""Response ingest (one path for single, bulk and import) and reads.

A write stores the facts and nothing derived: the responses and one `feedback.response.submitted`
event for each response it stored, in one statement. Rollups, cases and webhook deliveries are
projections of the events (`services/feedback/consumers.py`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.bulk import ItemStatus
from services.common.db import RawStatement
from services.common.errors import NotFound, Unprocessable
from services.common.ids import new_ids
from services.common.outbox import outbox_insert
from services.common.pagination import Page, decode_cursor, encode_cursor
from services.feedback.models import ResponseCreate, SurveyStatus, nps_category
from services.feedback.store.surveys import SurveyForIngest
from services.feedback.validation import scores_of, validate_answers

# The responses that are new (a response_id stored before is skipped) and the events of exactly
# those (`outbox_insert(keyed=True)`: each event's key is its response's id). Returns their ids.
WRITE = RawStatement(
    sa.text(
        f"""
WITH input AS (
  SELECT * FROM unnest(
    CAST(:ids AS uuid[]), CAST(:survey_ids AS uuid[]), CAST(:versions AS int[]), CAST(:rids AS text[]),
    CAST(:hashes AS text[]), CAST(:customers AS text[]), CAST(:journeys AS text[]), CAST(:stages AS text[]),
    CAST(:touchpoints AS text[]), CAST(:channels AS text[]), CAST(:submitted AS timestamptz[]),
    CAST(:answers AS text[]), CAST(:comments AS text[]), CAST(:languages AS text[]), CAST(:metadata AS text[]),
    CAST(:nps AS int[]), CAST(:csat AS int[]), CAST(:ces AS int[])
  ) AS t(id, survey_id, survey_version, response_id, content_hash, customer_external_id, journey_key, stage_key,
         touchpoint_key, channel, submitted_at, answers, comment, language, metadata, nps, csat, ces)
), ins AS (
  INSERT INTO response (id, workspace_id, survey_id, survey_version, response_id, content_hash,
    customer_external_id, journey_key, stage_key, touchpoint_key, channel, submitted_at, answers, comment,
    language, metadata, nps, csat, ces, created_at, analysed_at)
  SELECT id, :w, survey_id, survey_version, response_id, content_hash, customer_external_id, journey_key,
    stage_key, touchpoint_key, channel, submitted_at, answers::jsonb, comment, language, metadata::jsonb,
    nps, csat, ces, CAST(:now AS timestamptz),
    -- nothing to analyse: the comment worker only ever sees responses with a comment
    CASE WHEN comment IS NULL OR btrim(comment) = '' THEN CAST(:now AS timestamptz) END
  FROM input
  ON CONFLICT (workspace_id, response_id) DO NOTHING
  RETURNING id
), events AS (
  {outbox_insert("event_", "WHERE e.key IN (SELECT id FROM ins)", keyed=True)}
)
SELECT id::text AS id FROM ins
"""
    )
)


# The columns of a response's public form (`ResponsePublic`, with nps_category computed: `public_row`).
PUBLIC_COLUMNS = (
    *("id", "response_id", "survey_id", "survey_version", "customer_external_id", "journey_key", "stage_key"),
    *("touchpoint_key", "channel", "submitted_at", "answers", "comment", "language", "metadata", "nps", "csat"),
    *("ces", "sentiment", "themes", "created_at"),
)
_PUBLIC = ", ".join(PUBLIC_COLUMNS)


# One item's result in the kit's `ItemResult` shape (services/common/bulk.py): index, key (the
# item's response_id), status, id, errors. Plain dicts, not models: a 10,000-item call builds
# 10,000 of them, and a model each costs more than its insert.
Result = dict[str, Any]
# The statuses a response write reports, each counted in `BulkResult.counts`.
STATUSES = (ItemStatus.created, ItemStatus.duplicate, ItemStatus.conflict, ItemStatus.failed)


def item_result(
    index: int,
    status: ItemStatus,
    *,
    id: UUID | str | None = None,
    key: str | None = None,
    errors: list[dict[str, str]] | None = None,
) -> Result:
    return {"index": index, "key": key, "status": status, "id": id, "errors": errors}


def bulk_result(results: list[Result]) -> dict[str, Any]:
    """The kit's `BulkResult` shape: a count per status and the results in item order."""
    counts = dict.fromkeys(STATUSES, 0)
    for result in results:
        counts[result["status"]] += 1
    return {"counts": {status.value: n for status, n in counts.items()}, "items": results}


@dataclass(slots=True)
class Outcome:
    results: list[Result]  # one per item, in item order
    created: list[dict[str, Any]]  # public form of each stored response


def content_hash(item: ResponseCreate) -> str:
    # The request as sent (unset fields excluded), so a retry without submitted_at hashes the same.
    canonical = orjson.dumps(item.model_dump(mode="json", exclude_unset=True), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def _survey_problem(survey: SurveyForIngest | None, item: ResponseCreate, allow_closed: bool) -> str | None:
    if survey is None:
        return f"no survey with id {item.survey_id} in this workspace"
    if survey.status == SurveyStatus.draft:
        return f"survey {survey.key!r} is a draft; activate it before sending responses"
    if survey.status == SurveyStatus.closed and not allow_closed:
        return f"survey {survey.key!r} is closed and accepts no new responses (history can be imported)"
    return None


@dataclass(slots=True)
class Prepared:
    """Items validated against their surveys: a result for each refused one, rows for the rest."""

    results: list[Result | None]  # None: valid, to be stored
    rows: list[dict[str, Any]]  # public form of each valid item
    index_of: list[int]  # item index of each row
    cols: dict[str, list[Any]]  # the rows as the array parameters of `WRITE`
    first_with_rid: dict[str, tuple[int, str]]  # response_id -> (first index, content hash)


def prepare(
    items: list[ResponseCreate], surveys: dict[UUID, SurveyForIngest], *, allow_closed: bool, now: datetime
) -> Prepared:
    """Validate the items against their surveys; the valid ones become rows."""
    results: list[Result | None] = [None] * len(items)
    ids = iter(new_ids(len(items)))
    cols: dict[str, list[Any]] = {
        k: []
        for k in [
            "ids",
            "survey_ids",
            "versions",
            "rids",
            "hashes",
            "customers",
            "journeys",
            "stages",
            "touchpoints",
            "channels",
            "submitted",
            "answers",
            "comments",
            "languages",
            "metadata",
            "nps",
            "csat",
            "ces",
        ]
    }
    rows: list[dict[str, Any]] = []
    index_of: list[int] = []
    first_with_rid: dict[str, tuple[int, str]] = {}
    for index, item in enumerate(items):
        survey = surveys.get(item.survey_id)
        problem = _survey_problem(survey, item, allow_closed)
        if problem is not None:
            errors = [{"field": "survey_id", "message": problem}]
            results[index] = item_result(index, ItemStatus.failed, key=item.response_id, errors=errors)
            continue
        assert survey is not None
        errors, answers = validate_answers(survey.questions, item.answers)
        if errors:
            results[index] = item_result(index, ItemStatus.failed, key=item.response_id, errors=errors)
            continue
        digest = content_hash(item)
        if item.response_id is not None:
            seen = first_with_rid.get(item.response_id)
            if seen is not None:  # the same response twice in one batch
                same = seen[1] == digest
                results[index] = item_result(
                    index,
                    ItemStatus.duplicate if same else ItemStatus.conflict,
                    key=item.response_id,
                    errors=None
                    if same
                    else [{"field": "response_id", "message": f"item {seen[0]} has this response_id"}],
                )
                continue
            first_with_rid[item.response_id] = (index, digest)
        scores = scores_of(survey.questions, answers)
        submitted = item.submitted_at or now
        if submitted.tzinfo is None:
            submitted = submitted.replace(tzinfo=UTC)
        row = {
            "id": next(ids),
            "response_id": item.response_id,
            "survey_id": survey.id,
            "survey_version": survey.version,
            "customer_external_id": item.customer_external_id,
            "journey_key": item.journey_key or survey.journey_key,
            "stage_key": item.stage_key or survey.stage_key,
            "touchpoint_key": item.touchpoint_key or survey.touchpoint_key,
            "channel": item.channel.value if item.channel else None,
            "submitted_at": submitted,
            "answers": answers,
            "comment": item.comment,
            "language": item.language,
            "metadata": item.metadata,
            "nps": scores.nps,
            "nps_category": nps_category(scores.nps),
            "csat": scores.csat,
            "ces": scores.ces,
            "sentiment": None,
            "themes": None,
            "created_at": now,
        }
        rows.append(row)
        index_of.append(index)
        for col, value in (
            ("ids", row["id"]),
            ("survey_ids", survey.id),
            ("versions", survey.version),
            ("rids", item.response_id),
            ("hashes", digest),
            ("customers", item.customer_external_id),
            ("journeys", row["journey_key"]),
            ("stages", row["stage_key"]),
            ("touchpoints", row["touchpoint_key"]),
            ("channels", row["channel"]),
            ("submitted", submitted),
            ("answers", orjson.dumps(answers).decode()),
            ("comments", item.comment),
            ("languages", item.language),
            ("metadata", orjson.dumps(item.metadata).decode()),
            ("nps", scores.nps),
            ("csat", scores.csat),
            ("ces", scores.ces),
        ):
            cols[col].append(value)
    return Prepared(results=results, rows=rows, index_of=index_of, cols=cols, first_with_rid=first_with_rid)


async def get_response(session: AsyncSession, *, workspace_id: str, id: UUID) -> dict[str, Any]:
    row = (
        await session.execute(
            sa.text(f"SELECT {_PUBLIC} FROM response WHERE workspace_id = :w AND id = :id"),
            {"w": workspace_id, "id": id},
        )
    ).first()
    if row is None:
        raise NotFound(f"No response with id {id} in this workspace.")
    return public_row(row)


async def referenced_response(session: AsyncSession, *, workspace_id: str, id: UUID) -> dict[str, Any]:
    """The response a request body names: a 422 naming the field when the workspace has none."""
    try:
        return await get_response(session, workspace_id=workspace_id, id=id)
    except NotFound:
        message = f"no response with id {id} in this workspace"
        raise Unprocessable(f"response_id: {message}.", errors=[{"field": "response_id", "message": message}]) from None


def public_row(row: Any) -> dict[str, Any]:
    """A row holding PUBLIC_COLUMNS in the `ResponsePublic` shape."""
    data = {column: row._mapping[column] for column in PUBLIC_COLUMNS}
    data["nps_category"] = nps_category(data["nps"])
    return data


async def list_responses(
    session: AsyncSession,
    *,
    workspace_id: str,
    survey_id: UUID | None,
    customer_external_id: str | None,
    touchpoint_key: str | None,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
    limit: int,
) -> Page[dict[str, Any]]:
    where = ["workspace_id = :w"]
    params: dict[str, Any] = {"w": workspace_id, "n": limit + 1}
    for column, value in (
        ("survey_id", survey_id),
        ("customer_external_id", customer_external_id),
        ("touchpoint_key", touchpoint_key),
    ):
        if value is not None:
            where.append(f"{column} = :{column}")
            params[column] = value
    if since is not None:
        where.append("submitted_at >= :since")
        params["since"] = since
    if until is not None:
        where.append("submitted_at < :until")
        params["until"] = until
    if cursor is not None:
        where.append("id > :cursor")
        params["cursor"] = decode_cursor(cursor)
    rows = (
        await session.execute(
            sa.text(f"SELECT {_PUBLIC} FROM response WHERE {' AND '.join(where)} ORDER BY id LIMIT :n"),
            params,
        )
    ).all()
    items = [public_row(r) for r in rows]
    if len(items) > limit:
        items = items[:limit]
        return Page[dict[str, Any]](items=items, next_cursor=encode_cursor(items[-1]["id"]))
    return Page[dict[str, Any]](items=items, next_cursor=None)
