"""One statement writes responses and all that follows from them: the rows, their day and month
rollups, the cases the closed-loop rules open, their events (outbox) and their webhook deliveries.

Cases, events and deliveries are computed in Python for every prepared row and written only for
the rows the statement inserted (`keys` join them to `ins`): a response_id stored before is
skipped with everything it would have caused. The single-response path adds its guard and its
Idempotency-Key to the same CTEs (`store/submit.py`); the general path runs this statement once
per batch (`flows.record_responses`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import sqlalchemy as sa

from services.common.db import RawStatement
from services.common.outbox import outbox_insert, outbox_rows
from services.feedback.events import CASE_OPENED, RESPONSE_SUBMITTED
from services.feedback.store.loop import RULES, Rule, case_ctes, case_params, case_rows, rules_of
from services.feedback.store.responses import ROLLUP_SHARDS, Prepared, ingest_ctes
from services.feedback.store.surveys import SURVEYS_FOR_INGEST, SurveyForIngest, survey_for_ingest
from services.feedback.store.webhooks import SUBSCRIPTIONS, delivery_insert, delivery_rows

_INSERTED = "IN (SELECT id FROM ins)"


def write_ctes(gate: str = "") -> str:
    """`ingest_ctes(gate)` and the CTEs writing the cases, events and deliveries of what `ins` stored."""
    return f"""{ingest_ctes(gate)},
{case_ctes("case_", f"WHERE response_id {_INSERTED}")},
events AS ({outbox_insert("event_", f"WHERE e.key {_INSERTED}", keyed=True)}),
deliveries AS ({delivery_insert("delivery_", f"WHERE t.key {_INSERTED}", keyed=True)})"""


# Returns the ids of the stored responses.
WRITE = RawStatement(sa.text(f"WITH {write_ctes()}\nSELECT id::text AS id FROM ins"))
RULES_RAW, SUBSCRIPTIONS_RAW, SURVEYS_RAW = (
    RawStatement(RULES),
    RawStatement(SUBSCRIPTIONS),
    RawStatement(SURVEYS_FOR_INGEST),
)


@dataclass(frozen=True, slots=True)
class Followers:
    """What decides the consequences of a response write in a workspace besides the survey."""

    rules: list[Rule]  # those evaluated at write time (theme rules wait for the comment analysis)
    subscriptions: list[tuple[UUID, list[str]]]  # enabled webhook subscriptions: (id, event types)


async def load_for_write(
    conn: asyncpg.Connection, *, workspace_id: str, survey_ids: Sequence[UUID]
) -> tuple[dict[UUID, SurveyForIngest], Followers]:
    """The surveys, rules and subscriptions a write needs, read on the driver connection."""
    params = {"w": workspace_id, "ids": list(survey_ids)}
    surveys = [survey_for_ingest(dict(r)) for r in await SURVEYS_RAW.fetch(conn, params)]
    rules = await RULES_RAW.fetch(conn, params)
    subscriptions = await SUBSCRIPTIONS_RAW.fetch(conn, params)
    followers = Followers(
        rules=[r for r in rules_of([dict(r) for r in rules]) if r.theme is None],
        subscriptions=[(s["id"], list(s["event_types"])) for s in subscriptions],
    )
    return {s.id: s for s in surveys}, followers


def write_params(prepared: Prepared, followers: Followers, *, workspace_id: str, now: datetime) -> dict[str, Any]:
    """The parameters of `write_ctes` for the prepared rows, their cases, events and deliveries."""
    rows = prepared.rows
    cases = case_rows(rows, followers.rules, now=now)
    events: list[tuple[str, Any]] = [(RESPONSE_SUBMITTED, row) for row in rows]
    events += [(CASE_OPENED, case) for case in cases]
    keys = [row["id"] for row in rows] + [case["response_id"] for case in cases]
    outbox = outbox_rows(workspace_id, events)
    deliveries = delivery_rows(followers.subscriptions, workspace_id=workspace_id, events=events, now=now, keys=keys)
    return {
        **prepared.cols,
        **case_params(cases, "case_"),
        **{f"delivery_{k}": v for k, v in deliveries.items()},
        "event_workspace_id": workspace_id,
        "event_ids": outbox.ids,
        "event_subjects": outbox.subjects,
        "event_payloads": outbox.payloads,
        "event_headers": outbox.headers,
        "event_keys": keys,
        "w": workspace_id,
        "now": now,
        "shards": ROLLUP_SHARDS,
    }
