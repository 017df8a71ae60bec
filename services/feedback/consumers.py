"""The feedback service's projections: what is derived from its facts, built from its own events by
its durable consumer `feedback-projections` (services/common/consumer.py), never inside a request.
One consumer applies the three in one transaction per batch: they read the same events, and each
event is fetched, decoded and acknowledged once, not three times.

- rollups: NPS/CSAT/CES counts per day and month of every submitted response; a replay empties them
  and counts the whole stream again.
- cases: the follow-up case the loop rules in force open for a submitted response (score rules, or
  the default rule) or an analysed comment (theme rules). The case has the response's id and the
  triggering event's time, so applying an event again opens the same case or none (one per
  response); a replay only opens the missing ones and never touches a case people worked on.
- webhook deliveries: a pending delivery of each event for the subscriptions that want it (a replay
  adds only the missing ones).

Events published before the events contract (no `version` in the envelope) came from writes that
opened their cases and wrote their deliveries themselves: the cases and webhooks projections skip
them. The rollups count them (migration 0005 emptied the rollups those writes kept).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.common.consumer import Consumer
from services.common.events import Event
from services.common.outbox import Change, emit_many
from services.feedback.events import CASE_OPENED, COMMENT_ANALYSED, RESPONSE_SUBMITTED
from services.feedback.store import loop, rollups, webhooks

PROJECTIONS = "feedback-projections"

Events = list[Event[dict[str, Any]]]


async def apply(session: AsyncSession, events: Events) -> None:
    submitted = [e for e in events if e.type == RESPONSE_SUBMITTED]
    await rollups.add_responses(session, responses=[(e.workspace_id, e.data) for e in submitted])
    await open_cases(session, [e for e in events if e.type in (RESPONSE_SUBMITTED, COMMENT_ANALYSED)])
    await webhooks.schedule_deliveries(session, events=[e for e in events if e.version is not None])


async def open_cases(session: AsyncSession, events: Events) -> None:
    events = [e for e in events if e.version is not None]
    if not events:
        return
    rules = await loop.rules_in_force(session, workspace_ids=list({e.workspace_id for e in events}))
    # Score rules when a response is submitted; rules on themes once its comment is analysed.
    on_scores = {w: [r for r in found if r.theme is None] for w, found in rules.items()}
    on_themes = {w: [r for r in found if r.theme is not None] for w, found in rules.items()}
    cases: dict[str, tuple[str, dict[str, Any]]] = {}  # response id -> the first event's case
    for e in events:
        if e.type == RESPONSE_SUBMITTED:
            case = loop.case_for(e.data, on_scores[e.workspace_id], at=e.occurred_at)
        else:
            themes = e.data.get("themes") or []
            case = loop.case_for(e.data, on_themes[e.workspace_id], at=e.occurred_at, themes=themes)
        if case is not None:
            cases.setdefault(case["id"], (e.workspace_id, case))
    opened: dict[str, list[Change]] = {}
    for workspace_id, case in await loop.open_cases(session, cases=list(cases.values()), actor="rule"):
        opened.setdefault(workspace_id, []).append(Change(CASE_OPENED, case, case["id"], case["version"]))
    for workspace_id, changes in opened.items():
        await emit_many(session, workspace_id=workspace_id, changes=changes)


CONSUMERS = [Consumer(name=PROJECTIONS, stream="feedback", apply=apply, reset=rollups.RESET)]
