"""REST routes of interactions and outcomes: one, bulk (per-item results) and NDJSON import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common.auth import Caller, caller_with
from services.common.bulk import BulkResult, ItemResult
from services.common.db import SessionDep
from services.common.errors import PROBLEM_RESPONSES, Unprocessable, UnsupportedMediaType, problem_doc
from services.common.idempotency import IdempotencyDep, IdempotencyKeyHeader, stream_idempotently
from services.common.outbox import batch_changes, emit_many
from services.journey.events import CUSTOMER_UPSERTED
from services.journey.models import EventBulk, InteractionIn, OutcomeIn
from services.journey.store import interactions
from services.journey.store.interactions import CREATED, FAILED, Ingested, status_counts

Writer = Annotated[Caller, caller_with("journeys:write")]

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES)


async def ingest(session: AsyncSession, *, workspace_id: str, kind: str, items: list[Any]) -> Ingested:
    """Store the items and write their events (customers created on the way included), batch events
    split by size: facts only; what derives from them is built from these events."""
    if kind == "interaction":
        done = await interactions.record_interactions(session, workspace_id=workspace_id, items=items)
    else:
        done = await interactions.record_outcomes(session, workspace_id=workspace_id, items=items)
    changes = [
        *batch_changes(CUSTOMER_UPSERTED, done.created_customers),
        *batch_changes(f"journey.{kind}.recorded", done.stored),
    ]
    await emit_many(session, workspace_id=workspace_id, changes=changes)
    return done


async def _one(session: AsyncSession, idem: Any, *, workspace_id: str, kind: str, item: Any) -> Response:
    done = await ingest(session, workspace_id=workspace_id, kind=kind, items=[item])
    result = done.results[0]
    if result["status"] == FAILED:
        errors = [{"field": f"body.{e['field']}", "message": e["message"]} for e in result["errors"] or []]
        raise Unprocessable(f"The {kind} was not stored: " + "; ".join(e["message"] for e in errors), errors=errors)
    return await idem.respond(result, status_code=201 if result["status"] == CREATED else 200)  # type: ignore[no-any-return]


_ONE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": ItemResult, "description": "A replay of a stored event id: acknowledged, not stored again."}
}


@router.post(
    "/interactions", status_code=201, response_model=ItemResult, responses=_ONE_RESPONSES, tags=["interactions"]
)
async def record_interaction(
    caller: Writer, idem: IdempotencyDep, session: SessionDep, body: InteractionIn
) -> Response:
    """Record one interaction (201 created, 200 replayed event id)."""
    return await _one(session, idem, workspace_id=caller.workspace_id, kind="interaction", item=body)


@router.post("/interactions/bulk", status_code=200, response_model=BulkResult, tags=["interactions"])
async def record_interactions(caller: Writer, idem: IdempotencyDep, session: SessionDep, body: EventBulk) -> Response:
    """Record up to 10,000 interactions; an invalid item fails alone, replays are acknowledged."""
    done = await ingest(session, workspace_id=caller.workspace_id, kind="interaction", items=body.items)
    return await idem.respond({"counts": done.counts, "items": done.results}, status_code=200)


@router.post("/outcomes", status_code=201, response_model=ItemResult, responses=_ONE_RESPONSES, tags=["outcomes"])
async def record_outcome(caller: Writer, idem: IdempotencyDep, session: SessionDep, body: OutcomeIn) -> Response:
    """Record one outcome (201 created, 200 replayed event id)."""
    return await _one(session, idem, workspace_id=caller.workspace_id, kind="outcome", item=body)


@router.post("/outcomes/bulk", status_code=200, response_model=BulkResult, tags=["outcomes"])
async def record_outcomes(caller: Writer, idem: IdempotencyDep, session: SessionDep, body: EventBulk) -> Response:
    """Record up to 10,000 outcomes; an invalid item fails alone, replays are acknowledged."""
    done = await ingest(session, workspace_id=caller.workspace_id, kind="outcome", items=body.items)
    return await idem.respond({"counts": done.counts, "items": done.results}, status_code=200)


# NDJSON import ---------------------------------------------------------------------------------

IMPORT_CHUNK = 2000
NDJSON = "application/x-ndjson"


def _import_docs(kind: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                NDJSON: {
                    "schema": {"type": "string"},
                    "example": '{"event_id": "e1", "customer": "crm-1", ...}\n{"event_id": "e2", ...}\n',
                }
            },
            "description": f"One {kind} JSON object per line (as in the bulk endpoint).",
        }
    }


NDJSON_TYPES = (NDJSON, "application/ndjson", "application/jsonl")
_IMPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One result per line as it is stored (`line`, `key`, `status`, `id`, `errors`), "
        "then a last line with the `counts`. With an Idempotency-Key, a retry replays this answer.",
        "content": {NDJSON: {"schema": {"type": "string"}}},
    },
    415: problem_doc(415, f"The body is not NDJSON (send Content-Type {NDJSON})."),
}


async def _import_lines(
    body: bytes, sessionmaker: async_sessionmaker[AsyncSession], *, workspace_id: str, kind: str
) -> AsyncIterator[bytes]:
    """Store every IMPORT_CHUNK lines in their own transaction, streaming the results back.

    Each chunk commits on its own, so a long history is not one huge transaction; a failed import
    can simply be sent again, since replayed event ids are acknowledged, not stored twice.
    """
    counts = status_counts(())
    batch: list[tuple[int, Any]] = []

    async def flush() -> bytes:
        async with sessionmaker() as session, session.begin():
            done = await ingest(session, workspace_id=workspace_id, kind=kind, items=[item for _, item in batch])
        out = []
        for (line, _), result in zip(batch, done.results, strict=True):
            counts[result["status"]] += 1
            out.append(orjson.dumps({"line": line, **{k: v for k, v in result.items() if v is not None}}))
        batch.clear()
        return b"\n".join(out) + b"\n"

    for line_no, raw in enumerate(body.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            batch.append((line_no, orjson.loads(raw)))
        except orjson.JSONDecodeError as exc:
            counts["failed"] += 1
            error = {"field": "line", "message": f"not valid JSON: {exc}"}
            yield orjson.dumps({"line": line_no, "key": None, "status": "failed", "errors": [error]}) + b"\n"
        if len(batch) >= IMPORT_CHUNK:
            yield await flush()
    if batch:
        yield await flush()
    yield orjson.dumps({"counts": counts}) + b"\n"


async def _import(request: Request, caller: Caller, idempotency_key: str | None, *, kind: str) -> StreamingResponse:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in NDJSON_TYPES:
        raise UnsupportedMediaType(
            f"Send Content-Type {NDJSON} (one JSON object per line), not {media_type or 'nothing'!r}."
        )
    # The body is read before streaming starts: StreamingResponse listens for the client's
    # disconnect on the same receive channel and would swallow body messages read later.
    body = await request.body()
    if not body.strip():
        raise Unprocessable(
            f"The import is empty; send one {kind} JSON object per line.",
            errors=[{"field": "body", "message": "at least one line is required"}],
        )
    lines = _import_lines(body, request.app.state.sessionmaker, workspace_id=caller.workspace_id, kind=kind)
    return await stream_idempotently(request, idempotency_key, lines, media_type=NDJSON)


@router.post(
    "/interactions/import",
    response_class=StreamingResponse,
    openapi_extra=_import_docs("InteractionIn"),
    responses=_IMPORT_RESPONSES,
    tags=["interactions"],
)
async def import_interactions(
    caller: Writer, request: Request, idempotency_key: IdempotencyKeyHeader = None
) -> StreamingResponse:
    """Import a history of interactions as NDJSON; results stream back per line."""
    return await _import(request, caller, idempotency_key, kind="interaction")


@router.post(
    "/outcomes/import",
    response_class=StreamingResponse,
    openapi_extra=_import_docs("OutcomeIn"),
    responses=_IMPORT_RESPONSES,
    tags=["outcomes"],
)
async def import_outcomes(
    caller: Writer, request: Request, idempotency_key: IdempotencyKeyHeader = None
) -> StreamingResponse:
    """Import a history of outcomes as NDJSON; results stream back per line."""
    return await _import(request, caller, idempotency_key, kind="outcome")
