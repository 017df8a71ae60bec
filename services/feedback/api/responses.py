"""Responses: single, bulk and CSV/NDJSON import, all through one validated write path."""

from __future__ import annotations

import csv
from typing import Annotated, Any
from uuid import UUID

from fastapi import Path, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.bulk import BulkResult, ItemStatus
from services.common.db import SessionDep
from services.common.errors import Conflict, Problem, Unprocessable, UnsupportedMediaType, problem_doc, problems
from services.common.idempotency import IdempotencyDep
from services.common.pagination import CursorQuery, LimitQuery, Page
from services.common.timestamps import TimeQuery
from services.feedback.api._deps import Reader, Writer, make_router
from services.feedback.flows import record_responses
from services.feedback.imports import MAX_IMPORT_ROWS, csv_surveys, item_errors, parse_csv, parse_ndjson
from services.feedback.models import MAX_BULK, ResponseCreate, ResponsePublic, ResponsesBulk
from services.feedback.store import responses
from services.feedback.store.responses import Result, bulk_result, item_result
from services.feedback.store.surveys import surveys_for_ingest

router = make_router()


@router.post(
    "/responses",
    status_code=201,
    response_model=ResponsePublic,
    tags=["responses"],
    responses={
        200: {"description": "This response_id was stored before with the same content: the stored one."},
        **problems(409),
    },
)
async def submit_response(caller: Writer, idem: IdempotencyDep, session: SessionDep, body: ResponseCreate) -> Response:
    """Submit one response."""
    workspace_id = caller.workspace_id
    outcome = await record_responses(session, workspace_id=workspace_id, items=[body])
    result = outcome.results[0]
    if result["status"] == ItemStatus.failed:
        errors = result["errors"] or []
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        if errors and errors[0]["field"] == "survey_id" and "closed" in errors[0]["message"]:
            raise Conflict(f"The response was refused: {summary}", errors=errors)
        raise Unprocessable(f"The response does not fit the survey: {summary}", errors=errors)
    if result["status"] == ItemStatus.conflict:
        raise Conflict(
            f"Response {body.response_id!r} was already stored with other content; "
            "send a new response_id for a new response.",
            errors=result["errors"],
        )
    if result["status"] == ItemStatus.duplicate:
        stored = await responses.get_response(session, workspace_id=workspace_id, id=result["id"])
        return await idem.respond(ResponsePublic.model_validate(stored), status_code=200)
    return await idem.respond(ResponsePublic.model_validate(outcome.created[0]), status_code=201)


@router.post("/responses/bulk", status_code=200, response_model=BulkResult, tags=["responses"], responses=problems(409))
async def submit_responses(caller: Writer, idem: IdempotencyDep, session: SessionDep, body: ResponsesBulk) -> Response:
    """Submit up to 10,000 responses; each item is stored or refused on its own (see `items`)."""
    parsed: list[ResponseCreate | list[dict[str, str]]] = [
        item if isinstance(item, ResponseCreate) else item_errors(item, f"items.{i}")
        for i, item in enumerate(body.items)
    ]
    results = await _record_parsed(session, workspace_id=caller.workspace_id, parsed=parsed, allow_closed=False)
    return await idem.respond(bulk_result(results), status_code=200)


async def _record_parsed(
    session: AsyncSession,
    *,
    workspace_id: str,
    parsed: list[ResponseCreate | list[dict[str, str]]],
    allow_closed: bool,
) -> list[Result]:
    valid = [(i, p) for i, p in enumerate(parsed) if isinstance(p, ResponseCreate)]
    results: list[Result] = [
        item_result(i, ItemStatus.failed, errors=p) for i, p in enumerate(parsed) if isinstance(p, list)
    ]
    for start in range(0, len(valid), MAX_BULK):
        chunk = valid[start : start + MAX_BULK]
        outcome = await record_responses(
            session, workspace_id=workspace_id, items=[p for _, p in chunk], allow_closed=allow_closed
        )
        for result in outcome.results:
            result["index"] = chunk[result["index"]][0]
            results.append(result)
    results.sort(key=lambda r: r["index"])
    return results


_IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-ndjson": {"schema": {"type": "string"}, "example": '{"survey_id": "…", "answers": {}}\n'},
            "text/csv": {
                "schema": {"type": "string"},
                "example": "response_id,customer_external_id,submitted_at,answers.recommend,comment\n"
                "crm-1,C-1,2025-01-05T10:00:00Z,9,Great\n",
            },
        },
    }
}


@router.post(
    "/responses/import",
    status_code=200,
    response_model=BulkResult,
    tags=["responses"],
    openapi_extra=_IMPORT_BODY,
    responses={**problems(409), 415: problem_doc(415, "The body is neither NDJSON nor CSV.")},
)
async def import_responses(
    caller: Writer,
    idem: IdempotencyDep,
    session: SessionDep,
    request: Request,
    survey_id: Annotated[UUID | None, Query(description="Survey of CSV rows that have no survey_id column.")] = None,
) -> Response:
    """Import history as NDJSON (one response per line) or CSV; closed surveys accept imports."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if content_type in ("application/x-ndjson", "application/ndjson", "application/jsonl"):
        parsed = parse_ndjson(body)
    elif content_type in ("text/csv", "application/csv"):
        try:
            ids = csv_surveys(body, survey_id)
            known = await surveys_for_ingest(session, workspace_id=caller.workspace_id, survey_ids=list(ids))
            parsed = parse_csv(body, default_survey=survey_id, questions={k: v.questions for k, v in known.items()})
        except (UnicodeDecodeError, ValueError, csv.Error) as exc:
            raise Problem(f"The CSV could not be read: {exc}") from None
    else:
        raise UnsupportedMediaType(
            f"Send Content-Type application/x-ndjson or text/csv, not {content_type or 'nothing'!r}."
        )
    if not parsed:
        raise Unprocessable("The import holds no rows.")
    if len(parsed) > MAX_IMPORT_ROWS:
        raise Unprocessable(f"The import holds {len(parsed)} rows; send at most {MAX_IMPORT_ROWS} per call.")
    results = await _record_parsed(session, workspace_id=caller.workspace_id, parsed=parsed, allow_closed=True)
    return await idem.respond(bulk_result(results), status_code=200)


@router.get("/responses", tags=["responses"])
async def list_responses(
    caller: Reader,
    session: SessionDep,
    survey_id: Annotated[UUID | None, Query()] = None,
    customer: Annotated[str | None, Query(max_length=200, description="The customer's external_id.")] = None,
    touchpoint: Annotated[str | None, Query(max_length=80)] = None,
    since: Annotated[TimeQuery | None, Query(description="submitted_at ≥ this (UTC if no zone).")] = None,
    until: Annotated[TimeQuery | None, Query(description="submitted_at < this (UTC if no zone).")] = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> Page[ResponsePublic]:
    """List responses, oldest stored first."""
    page = await responses.list_responses(
        session,
        workspace_id=caller.workspace_id,
        survey_id=survey_id,
        customer_external_id=customer,
        touchpoint_key=touchpoint,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
    return Page[ResponsePublic].model_validate(page.model_dump())


@router.get("/responses/{response_id:uuid}", tags=["responses"], responses=problems(404))
async def get_response(
    caller: Reader, session: SessionDep, response_id: Annotated[UUID, Path(description="The response's id.")]
) -> ResponsePublic:
    """Get a response."""
    return ResponsePublic.model_validate(
        await responses.get_response(session, workspace_id=caller.workspace_id, id=response_id)
    )
