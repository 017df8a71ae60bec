"""Which journeys an event changes, looked up in the read model's structure (steps, touchpoints,
journeys' personas, score scopes), and which customers a fact names."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.events import Event

RESPONSE_EVENTS = frozenset({"feedback.response.submitted", "feedback.comment.analysed"})

_JOURNEYS_OF_TOUCHPOINTS = text(
    "SELECT DISTINCT journey_id FROM step WHERE workspace_id = :w AND touchpoint_id = ANY(CAST(:tps AS uuid[])) "
    "AND NOT removed"
)
_JOURNEYS_OF_KEYS = text(
    "SELECT id FROM journey WHERE workspace_id = :w AND key = ANY(CAST(:jks AS text[])) AND NOT deleted "
    "UNION SELECT s.journey_id FROM step s JOIN touchpoint t ON t.id = s.touchpoint_id "
    "WHERE s.workspace_id = :w AND t.key = ANY(CAST(:tks AS text[])) AND NOT s.removed"
)
# The journeys a persona's membership changes: those of the persona, and those with a scope of it.
_JOURNEYS_OF_PERSONAS = text(
    "SELECT id FROM journey WHERE workspace_id = :w AND persona_id = ANY(CAST(:ps AS uuid[])) AND NOT deleted "
    "UNION SELECT journey_id FROM score_scope WHERE workspace_id = :w AND persona_id = ANY(CAST(:ps AS uuid[]))"
)
# The personas customers belong to before an event moves them (they lose a member).
_PERSONAS_OF_CUSTOMERS = text(
    "SELECT DISTINCT persona_id FROM customer_ref WHERE workspace_id = :w AND external_id = ANY(CAST(:keys AS text[])) "
    "AND persona_id IS NOT NULL"
)
_JOURNEYS_OF_WORKSPACE = text("SELECT id FROM journey WHERE workspace_id = :w AND NOT deleted")


async def _journeys(session: AsyncSession, statement: Any, params: dict[str, Any]) -> list[UUID]:
    return list((await session.execute(statement, params)).scalars())


async def journeys_of_touchpoints(session: AsyncSession, w: str, touchpoints: list[str]) -> set[UUID | str]:
    return set(await _journeys(session, _JOURNEYS_OF_TOUCHPOINTS, {"w": w, "tps": sorted(set(touchpoints))}))


def customer_keys(event: Event[dict[str, Any]]) -> list[str]:
    data = event.data
    if event.type in RESPONSE_EVENTS:
        return [data["customer_external_id"]] if data.get("customer_external_id") else []
    if event.type.startswith("journey.customer."):
        return [c["external_id"] for c in data["items"]]
    return [i["customer"] for i in data["items"]]


async def journeys_of_fact(session: AsyncSession, w: str, event: Event[dict[str, Any]]) -> set[UUID | str]:
    """The journeys whose scores a fact can change, looked up before it is applied."""
    kind, data = event.type, event.data
    if kind in RESPONSE_EVENTS:
        named = {"w": w, "jks": [data.get("journey_key")], "tks": [data.get("touchpoint_key")]}
        return set(await _journeys(session, _JOURNEYS_OF_KEYS, named))
    if kind == "journey.interaction.recorded":
        return await journeys_of_touchpoints(session, w, [i["touchpoint_id"] for i in data["items"]])
    if kind == "journey.outcome.recorded":
        # An outcome without a journey counts for every journey its customer is in: rescore them all.
        if any(o.get("journey_id") is None for o in data["items"]):
            return set(await _journeys(session, _JOURNEYS_OF_WORKSPACE, {"w": w}))
        return {o["journey_id"] for o in data["items"]}
    # A customer's persona: the journeys of the personas they leave and join.
    items = data["items"]
    keys = [c["external_id"] for c in items]
    before = (await session.execute(_PERSONAS_OF_CUSTOMERS, {"w": w, "keys": keys})).scalars().all()
    personas = sorted({str(p) for p in before} | {c["persona_id"] for c in items if c.get("persona_id")})
    return set(await _journeys(session, _JOURNEYS_OF_PERSONAS, {"w": w, "ps": personas})) if personas else set()
