"""The response write, for one item and for many: a batch in the caller's transaction, with per-item results.

The surveys are read in the transaction (their version rows held until it commits, see
`store/surveys.py:SURVEYS_FOR_INGEST`), the items checked against them, and one statement on the
session's driver connection stores the new responses with their events (`store/responses.py:WRITE`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.bulk import ItemStatus
from services.common.db import RawStatement, driver_connection
from services.common.outbox import Change, outbox_rows, wrote_events
from services.feedback.events import RESPONSE_SUBMITTED
from services.feedback.models import ResponseCreate
from services.feedback.store.responses import WRITE, Outcome, Prepared, Result, item_result, prepare
from services.feedback.store.surveys import SURVEYS_FOR_INGEST, survey_for_ingest

_SURVEYS = RawStatement(SURVEYS_FOR_INGEST)
_STORED = sa.text(
    "SELECT id, response_id, content_hash FROM response WHERE workspace_id = :w AND response_id = ANY(:rids)"
)


async def record_responses(
    session: AsyncSession, *, workspace_id: str, items: list[ResponseCreate], allow_closed: bool = False
) -> Outcome:
    """Validate every item, store the valid ones with their events, and report per item: created,
    duplicate or conflict (of an earlier or an in-request response_id), or failed."""
    now = datetime.now(UTC)
    conn = await driver_connection(session)
    survey_ids = list({i.survey_id for i in items})
    surveys = [survey_for_ingest(r) for r in await _SURVEYS.fetch(conn, {"w": workspace_id, "ids": survey_ids})]
    prepared = prepare(items, {s.id: s for s in surveys}, allow_closed=allow_closed, now=now)
    results = prepared.results
    created: list[dict[str, Any]] = []
    clashes: dict[str, tuple[int, str]] = {}  # response_id stored before -> (index, content hash)
    if prepared.rows:
        stored = await WRITE.fetch(conn, _write_params(prepared, workspace_id=workspace_id, now=now))
        _settle(stored, prepared, results, created, clashes)
    if created:
        wrote_events(session)
    if clashes:
        for row in await session.execute(_STORED, {"w": workspace_id, "rids": list(clashes)}):
            index, digest = clashes[row.response_id]
            results[index] = _duplicate_of(index, row.id, row.response_id, same=row.content_hash == digest)
    # Items that repeated an earlier item's response_id get that item's id.
    for index, result in enumerate(results):
        assert result is not None
        if result["status"] in (ItemStatus.duplicate, ItemStatus.conflict) and result["id"] is None:
            first = results[prepared.first_with_rid[items[index].response_id or ""][0]]
            assert first is not None
            result["id"] = first["id"]
    return Outcome(results=[r for r in results if r is not None], created=created)


def _write_params(prepared: Prepared, *, workspace_id: str, now: datetime) -> dict[str, Any]:
    """The parameters of `WRITE`: the rows, and one event per row keyed to it."""
    rows = prepared.rows
    events = outbox_rows(workspace_id, [Change(RESPONSE_SUBMITTED, row, row["id"], 1) for row in rows])
    return {
        **prepared.cols,
        "w": workspace_id,
        "now": now,
        "event_workspace_id": workspace_id,
        "event_ids": events.ids,
        "event_subjects": events.subjects,
        "event_payloads": events.payloads,
        "event_headers": events.headers,
        "event_keys": prepared.cols["ids"],
    }


def _settle(
    stored: list[asyncpg.Record],
    prepared: Prepared,
    results: list[Result | None],
    created: list[dict[str, Any]],
    clashes: dict[str, tuple[int, str]],
) -> None:
    inserted = {r["id"] for r in stored}
    for row, index, digest in zip(prepared.rows, prepared.index_of, prepared.cols["hashes"], strict=True):
        if row["id"] in inserted:
            created.append(row)
            results[index] = item_result(index, ItemStatus.created, id=row["id"], key=row["response_id"])
        else:  # its response_id was stored before this request
            clashes[str(row["response_id"])] = (index, digest)


def _duplicate_of(index: int, id: UUID, response_id: str, *, same: bool) -> Result:
    if same:
        return item_result(index, ItemStatus.duplicate, id=id, key=response_id)
    message = f"response {response_id!r} was already stored with other content"
    return item_result(
        index,
        ItemStatus.conflict,
        id=id,
        key=response_id,
        errors=[{"field": "response_id", "message": message}],
    )
