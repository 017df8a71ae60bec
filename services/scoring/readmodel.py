"""The read model: two durable consumers, one per stream, apply the journey and feedback events to the
scoring tables (`tables.py`), keep the tallies of the journeys a batch of facts changes
(`tallies.py`), and mark the journeys whose inputs changed (`dirty_journey`), which the recompute
worker then refreshes and refits.

Each consumer applies a batch in one transaction with the kit's inbox (an event applied twice has
no second effect); versions make the result independent of the order events arrive in; every
statement is set-based over a batch's items, so memory is bounded by the batch (at most
`consumer_batch_size` events of at most 256 KiB).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.consumer import Consumer
from services.common.events import Event
from services.common.worker import wake_on_commit
from services.scoring import affected, tallies
from services.scoring.affected import RESPONSE_EVENTS
from services.scoring.store import load_config

RECOMPUTE_WORKER = "scoring-recompute"  # the sessionmaker `info` name of the worker to wake
DEBOUNCE_KEY = "scoring-debounce-seconds"
REFIT_KEY = "scoring-refit-seconds"

_Events = list[Event[dict[str, Any]]]

# Structure: newer versions win; tombstones keep their version. ------------------------------------

_UPSERT_TOUCHPOINT = text(
    "INSERT INTO touchpoint (id, workspace_id, key, name, channel, yearly_cost, currency, version, deleted) "
    "VALUES (:id, :w, :key, :name, :channel, CAST(:cost AS numeric), :currency, :v, :deleted) "
    "ON CONFLICT (id) DO UPDATE SET key = EXCLUDED.key, name = EXCLUDED.name, channel = EXCLUDED.channel, "
    "yearly_cost = EXCLUDED.yearly_cost, currency = EXCLUDED.currency, version = EXCLUDED.version, "
    "deleted = EXCLUDED.deleted WHERE touchpoint.version < EXCLUDED.version"
)
_UPSERT_JOURNEY = text(
    "INSERT INTO journey (id, workspace_id, key, name, persona_id, status, version, deleted) "
    "VALUES (:id, :w, :key, :name, :persona_id, :status, :v, :deleted) "
    "ON CONFLICT (id) DO UPDATE SET key = EXCLUDED.key, name = EXCLUDED.name, persona_id = EXCLUDED.persona_id, "
    "status = EXCLUDED.status, version = EXCLUDED.version, deleted = EXCLUDED.deleted "
    "WHERE journey.version < EXCLUDED.version"
)
_DELETE_JOURNEY = text(
    "INSERT INTO journey (id, workspace_id, key, name, status, version, deleted) "
    "VALUES (:id, :w, :key, '', 'deleted', :v, true) "
    "ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, deleted = true WHERE journey.version < EXCLUDED.version"
)
_UPSERT_STAGES = text(
    "INSERT INTO stage (id, workspace_id, journey_id, key, name, position, version) "
    "SELECT id, :w, :j, key, name, position, :v FROM unnest(CAST(:ids AS uuid[]), CAST(:keys AS text[]), "
    "CAST(:names AS text[]), CAST(:positions AS int[])) AS s(id, key, name, position) "
    "ON CONFLICT (id) DO UPDATE SET key = EXCLUDED.key, name = EXCLUDED.name, position = EXCLUDED.position, "
    "version = EXCLUDED.version, removed = false WHERE stage.version < EXCLUDED.version"
)
_STAGES_VERSION = text("SELECT coalesce(max(version), 0) FROM stage WHERE workspace_id = :w AND journey_id = :j")
# A stage event lists the journey's stages after the change: an older stage not among them is gone.
_REMOVE_OTHER_STAGES = text(
    "UPDATE stage SET removed = true, version = :v "
    "WHERE journey_id = :j AND version < :v AND id <> ALL(CAST(:ids AS uuid[]))"
)
_UPSERT_STEP = text(
    "INSERT INTO step (id, workspace_id, journey_id, stage_id, touchpoint_id, position, moment_of_truth, version, "
    "removed) VALUES (:id, :w, :j, :stage_id, :touchpoint_id, :position, :mot, :v, :removed) "
    "ON CONFLICT (id) DO UPDATE SET stage_id = EXCLUDED.stage_id, touchpoint_id = EXCLUDED.touchpoint_id, "
    "position = EXCLUDED.position, moment_of_truth = EXCLUDED.moment_of_truth, version = EXCLUDED.version, "
    "removed = EXCLUDED.removed WHERE step.version < EXCLUDED.version"
)

# Customers and facts. ------------------------------------------------------------------------------

# Sorted, so two replicas numbering overlapping customers lock rows in the same order (no deadlock).
_CUSTOMER_N = "('x' || substr(md5(CAST(:w AS text) || ':' || k), 1, 16))::bit(64)::bigint"  # see tables.py
_NUMBER_CUSTOMERS = text(
    "INSERT INTO customer_ref (workspace_id, external_id, n) "
    f"SELECT :w, k, {_CUSTOMER_N} FROM (SELECT DISTINCT k FROM unnest(CAST(:keys AS text[])) k ORDER BY k) s "
    "ON CONFLICT (workspace_id, external_id) DO NOTHING"
)
_UPSERT_CUSTOMERS = text(
    "INSERT INTO customer_ref AS c (workspace_id, external_id, n, persona_id, version) "
    f"SELECT DISTINCT ON (k) :w, k, {_CUSTOMER_N}, p, v FROM unnest(CAST(:keys AS text[]), CAST(:personas AS uuid[]), "
    "CAST(:versions AS int[])) AS s(k, p, v) ORDER BY k, v DESC "
    "ON CONFLICT (workspace_id, external_id) DO UPDATE SET persona_id = EXCLUDED.persona_id, "
    "version = EXCLUDED.version WHERE c.version < EXCLUDED.version"
)
_INSERT_INTERACTIONS = text(
    "INSERT INTO interaction (id, workspace_id, customer_n, touchpoint_id, journey_id, occurred_at) "
    "SELECT i.id, :w, c.n, i.tp, i.j, i.t FROM unnest(CAST(:ids AS uuid[]), CAST(:keys AS text[]), "
    "CAST(:tps AS uuid[]), CAST(:js AS uuid[]), CAST(CAST(:ts AS text[]) AS timestamptz[])) AS i(id, k, tp, j, t) "
    "JOIN customer_ref c ON c.workspace_id = :w AND c.external_id = i.k ON CONFLICT (id) DO NOTHING"
)
_INSERT_OUTCOMES = text(
    "INSERT INTO outcome (id, workspace_id, customer_n, name, value, journey_id, touchpoint_id, occurred_at) "
    "SELECT o.id, :w, c.n, o.name, o.value, o.j, o.tp, o.t FROM unnest(CAST(:ids AS uuid[]), CAST(:keys AS text[]), "
    "CAST(:names AS text[]), CAST(CAST(:values AS text[]) AS numeric[]), CAST(:js AS uuid[]), CAST(:tps AS uuid[]), "
    "CAST(CAST(:ts AS text[]) AS timestamptz[])) AS o(id, k, name, value, j, tp, t) "
    "JOIN customer_ref c ON c.workspace_id = :w AND c.external_id = o.k ON CONFLICT (id) DO NOTHING"
)
_UPSERT_RESPONSES = text(
    "INSERT INTO response AS r (id, workspace_id, customer_n, journey_key, touchpoint_key, nps, csat, ces, "
    "submitted_at, version) "
    "SELECT DISTINCT ON (x.id) x.id, :w, c.n, x.jk, x.tk, x.nps, x.csat, x.ces, x.t, x.v "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:keys AS text[]), CAST(:jks AS text[]), CAST(:tks AS text[]), "
    "CAST(:npss AS smallint[]), CAST(:csats AS smallint[]), CAST(:cess AS smallint[]), "
    "CAST(CAST(:ts AS text[]) AS timestamptz[]), CAST(:vs AS int[])) AS x(id, k, jk, tk, nps, csat, ces, t, v) "
    "LEFT JOIN customer_ref c ON c.workspace_id = :w AND c.external_id = x.k ORDER BY x.id, x.v DESC "
    "ON CONFLICT (id) DO UPDATE SET nps = EXCLUDED.nps, csat = EXCLUDED.csat, ces = EXCLUDED.ces, "
    "version = EXCLUDED.version WHERE r.version < EXCLUDED.version"
)

# A mark keeps the earlier due time of each lane: a steady stream of events cannot postpone scores.
_MARK = text(
    "INSERT INTO dirty_journey AS d (workspace_id, journey_id, due_at, fit_due_at) "
    "SELECT :w, j, now() + make_interval(secs => :debounce), now() + make_interval(secs => :refit) "
    "FROM (SELECT DISTINCT j FROM unnest(CAST(:js AS uuid[])) j ORDER BY j) s "
    "ON CONFLICT (workspace_id, journey_id) DO UPDATE SET due_at = least(d.due_at, EXCLUDED.due_at), "
    "fit_due_at = least(d.fit_due_at, EXCLUDED.fit_due_at)"
)


def _by_workspace(events: Iterable[Event[dict[str, Any]]]) -> dict[str, _Events]:
    """The events per workspace, workspaces in one order for every consumer (the order their locks are taken)."""
    grouped: dict[str, _Events] = defaultdict(list)
    for e in events:
        grouped[e.workspace_id].append(e)
    return dict(sorted(grouped.items()))


# Which journeys a fact changes is looked up in the structure (steps, touchpoints, journeys' personas)
# as committed. A fact and a structural change committing at once could each miss the other: the
# structure's recompute reads before the fact commits, the fact's lookup before the structure does.
# So facts hold a shared lock on their workspace and structural changes an exclusive one: whichever
# commits second sees the first, and marks the journey after it. Under the shared lock the structure
# cannot change, so a batch of facts looks its journeys up before it is applied, and keeps their
# tallies (`tallies.follow`).
_FACTS = frozenset(
    {
        "journey.interaction.recorded",
        "journey.outcome.recorded",
        "journey.customer.upserted",
        "journey.customer.reassigned",
        "feedback.response.submitted",
        "feedback.comment.analysed",
    }
)


async def _hold_workspace(session: AsyncSession, workspace_id: str, batch: _Events) -> bool:
    """Hold the workspace for the batch; whether it changes structure (held exclusively)."""
    structural = any(e.type not in _FACTS for e in batch)
    await session.execute(tallies.HOLD_EXCLUSIVE if structural else tallies.HOLD_SHARED, {"w": workspace_id})
    return structural


async def mark_dirty(
    session: AsyncSession, *, workspace_id: str, journey_ids: Iterable[UUID | str], refit: bool = False
) -> None:
    """The journeys' scores follow: refreshed from their tallies after the debounce, refitted after
    the refit delay (`refit`: a structural change, refitted after the debounce)."""
    ids = sorted({str(j) for j in journey_ids})
    if not ids:
        return
    debounce = float(session.info.get(DEBOUNCE_KEY, 0.25))
    refit_after = debounce if refit else float(session.info.get(REFIT_KEY, 30.0))
    await session.execute(_MARK, {"w": workspace_id, "js": ids, "debounce": debounce, "refit": refit_after})
    wake_on_commit(session, RECOMPUTE_WORKER)


async def _number_customers(session: AsyncSession, workspace_id: str, keys: list[str | None]) -> None:
    known = [k for k in keys if k is not None]
    if known:
        await session.execute(_NUMBER_CUSTOMERS, {"w": workspace_id, "keys": known})


async def _apply_batch(
    session: AsyncSession, workspace_id: str, batch: _Events, apply: Callable[[], Awaitable[set[UUID | str]]]
) -> None:
    """Apply one workspace's batch (`apply` returns the journeys a structural change touched), keep
    the tallies of the journeys its facts change, and mark every journey it changed."""
    structural = await _hold_workspace(session, workspace_id, batch)
    facts = [e for e in batch if e.type in _FACTS]
    touched: set[UUID | str] = set()
    for event in facts:
        touched |= await affected.journeys_of_fact(session, workspace_id, event)

    async def conversions() -> list[str]:
        return list((await load_config(session, workspace_id=workspace_id)).conversion_outcomes)

    following = None
    if not structural:
        following = await tallies.follow(
            session,
            workspace_id=workspace_id,
            journey_ids=touched,
            customer_keys=[k for e in facts for k in affected.customer_keys(e)],
            conversions=conversions,
        )
    dirty = touched | await apply()
    if following is not None:
        await following.close(session)
    if structural:
        await tallies.drop(session, workspace_id=workspace_id, journey_ids=dirty)
    await mark_dirty(session, workspace_id=workspace_id, journey_ids=dirty, refit=structural)


async def apply_journey_events(session: AsyncSession, events: _Events) -> None:
    for workspace_id, batch in _by_workspace(events).items():

        async def apply(w: str = workspace_id, batch: _Events = batch) -> set[UUID | str]:
            dirty: set[UUID | str] = set()
            for event in batch:
                dirty |= await _apply_journey_event(session, w, event)
            return dirty

        await _apply_batch(session, workspace_id, batch, apply)


async def _apply_journey_event(session: AsyncSession, w: str, event: Event[dict[str, Any]]) -> set[UUID | str]:
    kind, data, v = event.type, event.data, event.version or 0
    if kind in ("journey.touchpoint.created", "journey.touchpoint.updated", "journey.touchpoint.deleted"):
        deleted = kind.endswith("deleted")
        await session.execute(
            _UPSERT_TOUCHPOINT,
            {
                "id": data["id"],
                "w": w,
                "key": data["key"],
                "name": data.get("name", data["key"]),
                "channel": data.get("channel", "other"),
                "cost": data.get("yearly_cost"),
                "currency": data.get("currency", "EUR"),
                "v": v,
                "deleted": deleted,
            },
        )
        return await affected.journeys_of_touchpoints(session, w, [data["id"]])
    if kind in ("journey.journey.created", "journey.journey.updated"):
        journey = data["journey"] if kind.endswith("created") else data
        await session.execute(
            _UPSERT_JOURNEY,
            {
                "id": journey["id"],
                "w": w,
                "key": journey["key"],
                "name": journey["name"],
                "persona_id": journey.get("persona_id"),
                "status": journey["status"],
                "v": v,
                "deleted": False,
            },
        )
        if kind.endswith("created"):
            await _upsert_stages(session, w, journey["id"], data["stages"], v)
        return {journey["id"]}
    if kind == "journey.journey.deleted":
        await session.execute(_DELETE_JOURNEY, {"id": data["id"], "w": w, "key": data["key"], "v": v})
        return {data["id"]}  # its tallies are dropped; its scores stop (the worker skips a deleted journey)
    if kind.startswith("journey.stage."):
        await _upsert_stages(session, w, data["journey_id"], data["stages"], v)
        return {data["journey_id"]}
    if kind.startswith("journey.step."):
        await session.execute(
            _UPSERT_STEP,
            {
                "id": data["id"],
                "w": w,
                "j": data["journey_id"],
                "stage_id": data["stage_id"],
                "touchpoint_id": data["touchpoint_id"],
                "position": data["position"],
                "mot": data["moment_of_truth"],
                "v": v,
                "removed": kind.endswith("removed"),
            },
        )
        return {data["journey_id"]}
    if kind in ("journey.customer.upserted", "journey.customer.reassigned"):
        items = data["items"]
        await session.execute(
            _UPSERT_CUSTOMERS,
            {
                "w": w,
                "keys": [c["external_id"] for c in items],
                "personas": [c.get("persona_id") for c in items],
                "versions": [c["version"] for c in items],
            },
        )
        return set()
    if kind == "journey.interaction.recorded":
        await _record_interactions(session, w, data["items"])
    elif kind == "journey.outcome.recorded":
        await _record_outcomes(session, w, data["items"])
    # Facts: their journeys are looked up before (`affected.journeys_of_fact`). Personas: scores need only the
    # journeys' and customers' persona ids.
    return set()


async def _upsert_stages(session: AsyncSession, w: str, journey_id: str, stages: list[dict[str, Any]], v: int) -> None:
    """Every stage event lists all the journey's stages after it: the newest list wins whole (an older
    one arriving late would bring back a stage the newer one no longer lists)."""
    if await session.scalar(_STAGES_VERSION, {"w": w, "j": journey_id}) >= v:
        return
    ids = [s["id"] for s in stages]
    await session.execute(
        _UPSERT_STAGES,
        {
            "w": w,
            "j": journey_id,
            "v": v,
            "ids": ids,
            "keys": [s["key"] for s in stages],
            "names": [s["name"] for s in stages],
            "positions": [s["position"] for s in stages],
        },
    )
    await session.execute(_REMOVE_OTHER_STAGES, {"j": journey_id, "v": v, "ids": ids})


async def _record_interactions(session: AsyncSession, w: str, items: list[dict[str, Any]]) -> None:
    await _number_customers(session, w, [i["customer"] for i in items])
    await session.execute(
        _INSERT_INTERACTIONS,
        {
            "w": w,
            "ids": [i["id"] for i in items],
            "keys": [i["customer"] for i in items],
            "tps": [i["touchpoint_id"] for i in items],
            "js": [i.get("journey_id") for i in items],
            "ts": [i["occurred_at"] for i in items],
        },
    )


async def _record_outcomes(session: AsyncSession, w: str, items: list[dict[str, Any]]) -> None:
    await _number_customers(session, w, [o["customer"] for o in items])
    await session.execute(
        _INSERT_OUTCOMES,
        {
            "w": w,
            "ids": [o["id"] for o in items],
            "keys": [o["customer"] for o in items],
            "names": [o["name"] for o in items],
            "values": [o.get("value") for o in items],
            "js": [o.get("journey_id") for o in items],
            "tps": [o.get("touchpoint_id") for o in items],
            "ts": [o["occurred_at"] for o in items],
        },
    )


async def apply_feedback_events(session: AsyncSession, events: _Events) -> None:
    for workspace_id, batch in _by_workspace(events).items():
        responses = [e for e in batch if e.type in RESPONSE_EVENTS]
        if responses:

            async def apply(w: str = workspace_id, responses: _Events = responses) -> set[UUID | str]:
                await _record_responses(session, w, responses)
                return set()

            await _apply_batch(session, workspace_id, responses, apply)


async def _record_responses(session: AsyncSession, w: str, responses: _Events) -> None:
    items = [(e.data, e.version or 1) for e in responses]
    await _number_customers(session, w, [r.get("customer_external_id") for r, _ in items])
    await session.execute(
        _UPSERT_RESPONSES,
        {
            "w": w,
            "ids": [r["id"] for r, _ in items],
            "keys": [r.get("customer_external_id") for r, _ in items],
            "jks": [r.get("journey_key") for r, _ in items],
            "tks": [r.get("touchpoint_key") for r, _ in items],
            "npss": [r.get("nps") for r, _ in items],
            "csats": [r.get("csat") for r, _ in items],
            "cess": [r.get("ces") for r, _ in items],
            "ts": [r["submitted_at"] for r, _ in items],
            "vs": [v for _, v in items],
        },
    )


JOURNEY_EVENTS = frozenset(
    {
        "journey.touchpoint.created",
        "journey.touchpoint.updated",
        "journey.touchpoint.deleted",
        "journey.journey.created",
        "journey.journey.updated",
        "journey.journey.deleted",
        "journey.stage.added",
        "journey.stage.updated",
        "journey.stage.removed",
        "journey.step.added",
        "journey.step.updated",
        "journey.step.removed",
        "journey.customer.upserted",
        "journey.customer.reassigned",
        "journey.interaction.recorded",
        "journey.outcome.recorded",
    }
)
# What a rebuild empties before replaying (the scores stay: history is kept, new snapshots follow).
_RESET_JOURNEY = tuple(
    f"DELETE FROM {table}"
    for table in ("score_tally", "interaction", "outcome", "step", "stage", "journey", "touchpoint")
)

CONSUMERS = [
    Consumer(
        name="scoring-journey",
        stream="journey",
        apply=apply_journey_events,
        types=JOURNEY_EVENTS,
        reset=_RESET_JOURNEY,
    ),
    Consumer(
        name="scoring-feedback",
        stream="feedback",
        apply=apply_feedback_events,
        types=RESPONSE_EVENTS,
        reset=("DELETE FROM score_tally", "DELETE FROM response"),
    ),
]
