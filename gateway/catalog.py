"""The workspace's catalogue read through the gateway: personas and touchpoints (with the journeys they
sit in, their cross-journey priority and their NPS per journey), each page a Relay connection over the
journey service's own paging; and the connection, paging and loader kit the other read modules share.

The nested reads go by level: for a page of touchpoints, one call for their steps, one for those
steps' journeys, one grouped NPS read and one priority read per weighting, however many touchpoints
the page holds (up to MAX_PAGE)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID
from weakref import WeakKeyDictionary

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.scalars import JSON
from strawberry.types import Info

from gateway.measures import Metric, when
from gateway.schema import MAX_PAGE, Context, Journey, PageInfo
from services.common.pagination import encode_cursor

T = TypeVar("T")
MAX_SERVICE_PAGE = 500  # the services' largest page (`limit`) and their batch reads by id or key
METRIC_TOUCHPOINTS = 500  # touchpoints per metric read of the feedback service
PRIORITIES_PER_READ = 100  # touchpoints per priority read of the scoring service


def as_uuid(id: str, what: str) -> str:
    try:
        return str(UUID(id))
    except ValueError:
        raise ValueError(f"{id[:40]!r} is not {what} id (a UUID).") from None


# Connections --------------------------------------------------------------------------------------


@strawberry.type(description="An item of a page and its cursor: pass it as `after` for the items after it.")
class Edge(Generic[T]):
    node: T
    cursor: str


@strawberry.type(description="A page of a list the service pages (Relay connection); `after` takes a cursor of it.")
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo


def rest_params(**values: Any) -> list[tuple[str, Any]]:
    """REST query parameters: a list repeats its parameter, None leaves it out, a time goes as RFC 3339."""
    return [(name, v.isoformat() if isinstance(v, datetime) else v)
            for name, value in values.items() for v in (value if isinstance(value, list) else [value])
            if v is not None]  # fmt: skip


def page_params(first: int, after: str | None, cap: int, **filters: Any) -> list[tuple[str, Any]]:
    """The REST query of a page: `limit`, `cursor` and the filters."""
    if not 1 <= first <= cap:
        raise ValueError(f"`first` is 1 to {cap}.")
    return rest_params(limit=first, cursor=after, **filters)


def connection_of(page: dict[str, Any], node: Callable[[dict[str, Any]], T]) -> Connection[T]:
    """A service's page as a connection: its lists are keyset-paged on their UUIDv7 ids, so an item's
    cursor is the kit's cursor of its id (the one the service hands out as `next_cursor`)."""
    edges = [Edge(node=node(item), cursor=encode_cursor(UUID(item["id"]))) for item in page["items"]]
    last = edges[-1].cursor if edges else None
    return Connection(edges=edges, page_info=PageInfo(has_next_page=page["next_cursor"] is not None, end_cursor=last))


# Loaders ------------------------------------------------------------------------------------------


class Loaders:
    """This request's batch reads of the catalogue, beside the Context's own (made on first use)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

        def by(service: str, path: str, param: str, field: str) -> DataLoader[str, dict[str, Any] | None]:
            async def load(values: list[str]) -> list[dict[str, Any] | None]:
                page = await ctx.get(service, path, params=[(param, v) for v in values] + [("limit", len(values))])
                found = {str(item[field]): item for item in page["items"]}
                return [found.get(v) for v in values]

            return DataLoader(load, max_batch_size=MAX_SERVICE_PAGE)

        self.journeys_by_id = by("journey", "/v1/journeys", "id", "id")
        self.journeys_by_key = by("journey", "/v1/journeys", "key", "key")
        self.touchpoints_by_id = by("journey", "/v1/touchpoints", "id", "id")
        self.touchpoints_by_key = by("journey", "/v1/touchpoints", "key", "key")
        self.personas_by_id = by("journey", "/v1/personas", "id", "id")
        self.journey_ids_by_touchpoint: DataLoader[str, list[str]] = DataLoader(
            self._journey_ids_by_touchpoint, max_batch_size=MAX_SERVICE_PAGE
        )
        self.priorities: DataLoader[tuple[str, str], dict[str, Any]] = DataLoader(self._priorities)
        self.nps_by_touchpoint: DataLoader[str, list[JourneyNps]] = DataLoader(
            self._nps_by_touchpoint, max_batch_size=METRIC_TOUCHPOINTS
        )

    async def _journey_ids_by_touchpoint(self, touchpoint_ids: list[str]) -> list[list[str]]:
        """The journeys whose steps place each touchpoint, in the order of their steps."""
        found: dict[str, list[str]] = {t: [] for t in touchpoint_ids}
        params = [("touchpoint_id", t) for t in touchpoint_ids] + [("limit", MAX_SERVICE_PAGE)]
        cursor = None
        while True:  # a touchpoint placed in many journeys takes more than one page
            page = await self.ctx.get("journey", "/v1/steps", params=params + ([("cursor", cursor)] if cursor else []))
            for step in page["items"]:
                journeys = found[step["touchpoint_id"]]
                if step["journey_id"] not in journeys:
                    journeys.append(step["journey_id"])
            if (cursor := page["next_cursor"]) is None:
                return [found[t] for t in touchpoint_ids]

    async def _priorities(self, keys: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """(touchpoint id, weight_by) keys: one batch read per weighting and 100 touchpoints (the scoring
        service answers each touchpoint of a batch as its own read does)."""

        async def read(weight_by: str, ids: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
            params = [("touchpoint_id", t) for t in ids] + [("weight_by", weight_by)]
            batch = await self.ctx.get("scoring", "/v1/priorities", params=params)
            return {(p["touchpoint_id"], weight_by): p for p in batch["items"]}

        weightings = {w: [t for t, w2 in keys if w2 == w] for w in dict.fromkeys(w for _, w in keys)}
        reads = [read(w, ids[i : i + PRIORITIES_PER_READ]) for w, ids in weightings.items()
                 for i in range(0, len(ids), PRIORITIES_PER_READ)]  # fmt: skip
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for answer in await asyncio.gather(*reads):
            found.update(answer)
        return [found[key] for key in keys]

    async def _nps_by_touchpoint(self, keys: list[str]) -> list[list[JourneyNps]]:
        """Every touchpoint's NPS per journey in one grouped read."""
        params = [("touchpoint", k) for k in keys] + [("group_by", "touchpoint"), ("group_by", "journey")]
        result = await self.ctx.get("feedback", "/v1/metrics/nps", params=params)
        found: dict[str, list[JourneyNps]] = {k: [] for k in keys}
        for g in result["groups"]:
            nps = Metric.of(g, result["method"], when(result["as_of"]))
            found[g["group"]["touchpoint"]].append(JourneyNps(journey_key=g["group"]["journey"], nps=nps))
        return [found[k] for k in keys]


# Kept beside the request's Context (keyed by it, gone with it) rather than in it: the Context is
# gateway/schema.py's, built before anything of this module is known.
_LOADERS: WeakKeyDictionary[Context, Loaders] = WeakKeyDictionary()


def loaders(ctx: Context) -> Loaders:
    """The request's catalogue loaders."""
    if ctx not in _LOADERS:
        _LOADERS[ctx] = Loaders(ctx)
    return _LOADERS[ctx]


class OfJourney(Protocol):
    journey_id: str


async def journey_by_id(root: OfJourney, info: Info[Context, None]) -> Journey | None:
    """The journey of `root.journey_id` (a resolver)."""
    found = await loaders(info.context).journeys_by_id.load(root.journey_id)
    return Journey.of(found) if found else None


# Personas and touchpoints -------------------------------------------------------------------------


@strawberry.type(description="A persona of the workspace (journey service); `rules` assign customers to it.")
class Persona:
    id: strawberry.ID
    key: str
    name: str
    role: str | None
    background: str | None
    needs: list[str]
    goals: list[str]
    pains: list[str]
    priority: int
    rules: JSON
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, p: dict[str, Any]) -> Persona:
        return cls(id=strawberry.ID(p["id"]), key=p["key"], name=p["name"], role=p["role"],
                   background=p["background"], needs=p["needs"], goals=p["goals"], pains=p["pains"],
                   priority=p["priority"], rules=p["rules"], version=p["version"],
                   created_at=datetime.fromisoformat(p["created_at"]),
                   updated_at=datetime.fromisoformat(p["updated_at"]))  # fmt: skip


async def _nps_journey(root: JourneyNps, info: Info[Context, None]) -> Journey | None:
    found = await loaders(info.context).journeys_by_key.load(root.journey_key) if root.journey_key else None
    return Journey.of(found) if found else None


@strawberry.type(description="A touchpoint's NPS in one journey: the answers given about it there.")
class JourneyNps:
    journey_key: str | None = strawberry.field(description="Null: the answers named no journey.")
    nps: Metric
    journey: Journey | None = strawberry.field(
        resolver=_nps_journey, description="The journey of that key; null when the journey service has none."
    )


@strawberry.type(description="A journey's part in a touchpoint's priority.")
class JourneyRelevance:
    journey_id: strawberry.Private[str]
    relevance: float | None
    relevance_low: float | None
    relevance_high: float | None
    weight: float = strawberry.field(description="The journey's share of customers (or value) among its journeys.")
    snapshot_id: strawberry.ID
    journey: Journey | None = strawberry.field(
        resolver=journey_by_id, description="Null when the journey is gone from the journey service."
    )


@strawberry.type(description="A touchpoint's priority across every journey it serves (scoring service): the sum "
                 "over its journeys of relevance × the journey's weight, with its interval.")  # fmt: skip
class Priority:
    value: float | None
    low: float | None
    high: float | None
    weight_by: str
    journeys: list[JourneyRelevance]

    @classmethod
    def of(cls, p: dict[str, Any]) -> Priority:
        journeys = [JourneyRelevance(journey_id=j["journey_id"], relevance=j["relevance"],
                                     relevance_low=j["relevance_low"], relevance_high=j["relevance_high"],
                                     weight=j["weight"], snapshot_id=strawberry.ID(j["snapshot_id"]))
                    for j in p["journeys"]]  # fmt: skip
        return cls(value=p["priority"], low=p["low"], high=p["high"], weight_by=p["weight_by"], journeys=journeys)


async def _touchpoint_journeys(root: CatalogTouchpoint, info: Info[Context, None]) -> list[Journey]:
    ids = await loaders(info.context).journey_ids_by_touchpoint.load(str(root.id))
    found = await loaders(info.context).journeys_by_id.load_many(ids)
    return [Journey.of(j) for j in found if j]


async def _touchpoint_priority(
    root: CatalogTouchpoint, info: Info[Context, None], weight_by: str = "customers"
) -> Priority:
    return Priority.of(await loaders(info.context).priorities.load((str(root.id), weight_by)))


async def _touchpoint_nps(root: CatalogTouchpoint, info: Info[Context, None]) -> list[JourneyNps]:
    return await loaders(info.context).nps_by_touchpoint.load(root.key)


@strawberry.type(description="A touchpoint of the workspace's catalogue (journey service), with what the other "
                 "services know of it across journeys.")  # fmt: skip
class CatalogTouchpoint:
    id: strawberry.ID
    key: str
    name: str
    channel: str
    department: str | None
    yearly_cost: Decimal | None
    currency: str
    description: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    # Nullable, as every field another call answers: a service that fails nulls only its fields, with its
    # error at their paths, and the rest of the page is still served.
    journeys: list[Journey] | None = strawberry.field(
        resolver=_touchpoint_journeys, description="The journeys it sits in."
    )
    priority: Priority | None = strawberry.field(
        resolver=_touchpoint_priority, description="Cross-journey priority; `weightBy`: customers or value."
    )
    nps_by_journey: list[JourneyNps] | None = strawberry.field(
        resolver=_touchpoint_nps, description="NPS of the answers about it, per journey (feedback service)."
    )

    @classmethod
    def of(cls, t: dict[str, Any]) -> CatalogTouchpoint:
        cost = t["yearly_cost"]
        return cls(id=strawberry.ID(t["id"]), key=t["key"], name=t["name"], channel=t["channel"],
                   department=t["department"], yearly_cost=None if cost is None else Decimal(cost),
                   currency=t["currency"], description=t["description"], version=t["version"],
                   created_at=datetime.fromisoformat(t["created_at"]),
                   updated_at=datetime.fromisoformat(t["updated_at"]))  # fmt: skip


# Root fields --------------------------------------------------------------------------------------


async def _personas(
    info: Info[Context, None],
    first: int = 20,
    after: str | None = None,
    id: list[strawberry.ID] | None = None,
    key: list[str] | None = None,
    q: str | None = None,
) -> Connection[Persona]:
    params = page_params(first, after, MAX_SERVICE_PAGE, id=id, key=key, q=q)
    return connection_of(await info.context.get("journey", "/v1/personas", params=params), Persona.of)


async def _touchpoints(
    info: Info[Context, None],
    first: int = 20,
    after: str | None = None,
    id: list[strawberry.ID] | None = None,
    key: list[str] | None = None,
    channel: str | None = None,
    department: str | None = None,
    q: str | None = None,
) -> Connection[CatalogTouchpoint]:
    params = page_params(first, after, MAX_PAGE, id=id, key=key, channel=channel, department=department, q=q)
    return connection_of(await info.context.get("journey", "/v1/touchpoints", params=params), CatalogTouchpoint.of)


async def _touchpoint(
    info: Info[Context, None], id: strawberry.ID | None = None, key: str | None = None
) -> CatalogTouchpoint | None:
    if (id is None) == (key is None):
        raise ValueError("Give the touchpoint's id or its key, not both and not neither.")
    found = await (
        loaders(info.context).touchpoints_by_key.load(key)
        if key is not None
        else loaders(info.context).touchpoints_by_id.load(as_uuid(str(id), "a touchpoint"))
    )
    return CatalogTouchpoint.of(found) if found else None  # None: not in the caller's workspace


@strawberry.type
class CatalogQuery:
    # Nullable, so that a field that fails leaves the other root fields of the document answered.
    personas: Connection[Persona] | None = strawberry.field(
        resolver=_personas, description=f"The workspace's personas, up to {MAX_SERVICE_PAGE} a page (id, key, q)."
    )
    touchpoints: Connection[CatalogTouchpoint] | None = strawberry.field(
        resolver=_touchpoints,
        description=f"The touchpoint catalogue, up to {MAX_PAGE} a page filters: id, key, channel, department, q.",
    )
    touchpoint: CatalogTouchpoint | None = strawberry.field(
        resolver=_touchpoint, description="One touchpoint by id or by key; null when the workspace has none."
    )
