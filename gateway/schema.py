"""The unified journey view: the journey service's map, with the scoring service's scores and the
feedback service's NPS, CSAT and CES on every step, fetched by level: the maps of every journey the
query reached in one batch call, then their scores in one and each metric in one grouped call,
however many steps they have (more only past the services' batch limits)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable
from typing import Any
from uuid import UUID

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.fastapi import BaseContext
from strawberry.types import Info
from strawberry.types.nodes import SelectedField, Selection

from gateway import analytics, snapshot
from gateway.measures import Health, JourneyMetrics, Metric, TouchpointScore, when
from gateway.services import READ_SCOPES, WRITE_SCOPES, ServiceError, Services, require
from services.common.auth import Caller
from services.common.pagination import encode_cursor


class Context(BaseContext):
    """One request's: the caller's token and who it is (verified by the gateway too: its workspace
    and scopes key the cache and decide which fields resolve), and the loaders that batch and share
    its service calls."""

    def __init__(self, services: Services, authorization: str, caller: Caller) -> None:
        super().__init__()
        self.services, self.authorization, self.caller = services, authorization, caller
        # The services take up to 100 journeys per batch read.
        self.scores: DataLoader[str, dict[str, Any] | None] = DataLoader(self._load_scores, max_batch_size=100)
        self.maps: DataLoader[str, dict[str, Any] | None] = DataLoader(self._load_maps, max_batch_size=100)
        # Per metric, keyed by journey key: one call grouped by journey and touchpoint for every journey
        # reached (the feedback service takes up to 100 journeys per read).
        self.analytics = analytics.AnalyticsLoaders(self)
        self.metrics: dict[str, DataLoader[str, JourneyMetrics]] = {
            name: DataLoader(load_fn=functools.partial(self._load_metric, name), max_batch_size=100)
            for name in ("nps", "csat", "ces")
        }

    async def get(self, service: str, path: str, params: Any = None) -> Any:
        require(self.caller, service, READ_SCOPES)
        return await self.services.get(service, path, authorization=self.authorization, params=params)

    async def get_or_none(self, service: str, path: str, params: Any = None) -> Any:
        """The service's answer, or None where it has no such thing in the caller's workspace (404)."""
        try:
            return await self.get(service, path, params=params)
        except ServiceError as error:
            if (error.extensions or {}).get("status") == 404:
                return None
            raise

    async def send(
        self, method: str, service: str, path: str, body: Any = None, idempotency_key: str | None = None
    ) -> Any:
        require(self.caller, service, WRITE_SCOPES)
        return await self.services.send(
            method, service, path, authorization=self.authorization, json=body, idempotency_key=idempotency_key
        )

    async def _by_journey(self, service: str, path: str, param: str, ids: list[str], id_of: Any) -> list[Any]:
        """A service's batch read of journeys, in the order of `ids` (None for those it does not have)."""
        batch = await self.get(service, path, params=[(param, j) for j in ids])
        found = {id_of(item): item for item in batch["items"]}
        return [found.get(j) for j in ids]

    async def _load_maps(self, journey_ids: list[str]) -> list[dict[str, Any] | None]:
        return await self._by_journey("journey", "/v1/journey-maps", "id", journey_ids, lambda m: m["journey"]["id"])

    async def _load_metric(self, name: str, journey_keys: list[str]) -> list[JourneyMetrics]:
        params = [("journey", j) for j in journey_keys] + [("group_by", "journey"), ("group_by", "touchpoint")]
        result = await self.get("feedback", f"/v1/metrics/{name}", params=params)
        as_of = when(result.get("as_of"))
        groups: dict[str, dict[str, Any]] = {j: {} for j in journey_keys}
        for g in result["groups"]:
            groups[g["group"]["journey"]][g["group"]["touchpoint"]] = g
        return [JourneyMetrics(groups[j], result["method"], as_of) for j in journey_keys]

    async def _load_scores(self, journey_ids: list[str]) -> list[dict[str, Any] | None]:
        return await self._by_journey("scoring", "/v1/scores", "journey_id", journey_ids, lambda s: s["journey_id"])


@strawberry.type
class Touchpoint:
    id: strawberry.ID
    key: str
    name: str
    channel: str


# The steps' scores and metrics are fetched by their journey's `stages` for every step at once (one
# call per service and level) and set on each step: its fields only read them. A service that failed
# raises its error at the fields that needed it, so the rest of the answer is still served. Reading
# prefetched values keeps graphql-core from awaiting 4 coroutines per step (2,000 steps: 8,000).
STEP_FETCHED = ("score", "nps", "csat", "ces", *analytics.STEP_FETCHED)


def _fetched(step: Step, name: str) -> Any:
    value = step.fetched[name]
    if isinstance(value, Exception):
        raise value
    return value


def _step_score(root: Step) -> TouchpointScore | None:
    scores = _fetched(root, "score")
    return scores.get(str(root.touchpoint.id)) if scores is not None else None


def _step_nps(root: Step) -> Metric | None:
    return _fetched(root, "nps")  # type: ignore[no-any-return]


def _step_csat(root: Step) -> Metric | None:
    return _fetched(root, "csat")  # type: ignore[no-any-return]


def _step_ces(root: Step) -> Metric | None:
    return _fetched(root, "ces")  # type: ignore[no-any-return]


@strawberry.type
class Step:
    id: strawberry.ID
    position: int
    moment_of_truth: bool
    expected_emotion: int
    touchpoint: Touchpoint
    fetched: strawberry.Private[dict[str, Any]]  # STEP_FETCHED name -> value, or the service's error
    # Nullable: null, with an error at its path, while the feedback service cannot answer.
    nps: Metric | None = strawberry.field(resolver=_step_nps, description="NPS answered about this touchpoint here.")
    csat: Metric | None = strawberry.field(resolver=_step_csat, description="CSAT answered about this touchpoint here.")
    ces: Metric | None = strawberry.field(resolver=_step_ces, description="CES answered about this touchpoint here.")
    score: TouchpointScore | None = strawberry.field(
        resolver=_step_score, description="Its touchpoint's scores in this journey; null before the first scores."
    )
    sentiment: analytics.CommentSentiment | None = strawberry.field(resolver=analytics.step_sentiment)
    themes: list[analytics.ThemeCount] | None = strawberry.field(resolver=analytics.step_themes)


@strawberry.type
class Stage:
    id: strawberry.ID
    key: str
    name: str
    position: int
    steps: list[Step]


def _selected(selections: list[Selection], path: list[str]) -> set[str] | None:
    """The field names selected under `path` (fragments flattened); None when the path is not there."""
    if not path:
        names: set[str] = set()
        for f in selections:
            names |= {f.name} if isinstance(f, SelectedField) else _selected(f.selections, []) or set()
        return names
    for f in selections:
        if not isinstance(f, SelectedField):  # a fragment: look inside
            found = _selected(f.selections, path)
        elif f.name == path[0]:
            found = _selected(f.selections, path[1:])
        else:
            continue
        if found is not None:
            return found
    return None


async def _stages(info: Info[Context, None], journey_map: dict[str, Any]) -> list[Stage]:
    j = journey_map["journey"]
    ctx = info.context
    wanted = _selected(list(info.selected_fields), ["stages", "steps"]) or set()

    async def fetch(name: str) -> Any:
        try:
            if name in analytics.STEP_FETCHED:
                return await analytics.touchpoint_comments(ctx, journey_map)
            if name == "score":
                scores = await ctx.scores.load(j["id"])
                return {t["touchpoint_id"]: TouchpointScore.of(t) for t in scores["touchpoints"]} if scores else None
            return await ctx.metrics[name].load(j["key"])
        except ServiceError as error:
            return error

    names = [n for n in STEP_FETCHED if n in wanted]
    fetched = dict(zip(names, await asyncio.gather(*(fetch(n) for n in names)), strict=True))
    # A touchpoint placed in several steps is one object, with its fetched values, for all of them.
    per_touchpoint: dict[str, tuple[Touchpoint, dict[str, Any]]] = {}
    stages = []
    for s in journey_map["stages"]:
        steps = []
        for st in s["steps"]:
            tp = st["touchpoint"]
            made = per_touchpoint.get(tp["id"])
            if made is None:
                own = {n: v.of(tp["key"]) if isinstance(v, JourneyMetrics) else v for n, v in fetched.items()}
                touchpoint = Touchpoint(id=strawberry.ID(tp["id"]), key=tp["key"], name=tp["name"],
                                        channel=tp["channel"])  # fmt: skip
                made = per_touchpoint[tp["id"]] = (touchpoint, own)
            steps.append(
                Step(
                    id=strawberry.ID(st["id"]),
                    position=st["position"],
                    moment_of_truth=st["moment_of_truth"],
                    expected_emotion=st["expected_emotion"],
                    touchpoint=made[0],
                    fetched=made[1],
                )
            )
        stages.append(Stage(id=strawberry.ID(s["id"]), key=s["key"], name=s["name"], position=s["position"],
                            steps=steps))  # fmt: skip
    return stages


@strawberry.type
class Journey:
    id: strawberry.ID
    key: str
    name: str
    status: str
    owner: str | None
    team: str | None
    state: analytics.JourneyState
    improves_journey_id: strawberry.Private[str | None]
    # Typed by their resolvers, which name their types lazily (gateway/analytics.py says why).
    persona = strawberry.field(resolver=analytics.journey_persona, description="Who it is for; null: none set.")
    improves = strawberry.field(resolver=analytics.journey_improves, description="A target's current journey.")
    improved_by = strawberry.field(resolver=analytics.journey_improved_by, description="A current one's targets.")
    funnel: analytics.Funnel | None = strawberry.field(resolver=analytics.journey_funnel)
    top_paths: analytics.Paths | None = strawberry.field(resolver=analytics.journey_top_paths)
    nps_trend: analytics.NpsTrend | None = strawberry.field(resolver=analytics.journey_nps_trend)
    portfolio: snapshot.Portfolio | None = strawberry.field(resolver=snapshot.journey_portfolio)
    moments_of_truth: snapshot.MomentsOfTruth | None = strawberry.field(resolver=snapshot.journey_moments_of_truth)
    attribution: list[snapshot.Attribution] | None = strawberry.field(resolver=snapshot.journey_attribution)

    @strawberry.field
    async def stages(self, info: Info[Context, None]) -> list[Stage]:
        journey_map = await info.context.maps.load(str(self.id))
        return await _stages(info, journey_map) if journey_map else []

    @strawberry.field
    async def health(self, info: Info[Context, None]) -> Health | None:
        scores = await info.context.scores.load(str(self.id))
        if scores is None:
            return None
        h = scores["health"]
        return Health(score=h["score"], low=h["low"], high=h["high"], n=h["n"], method=h["method"],
                      as_of=when(scores["as_of"]))  # fmt: skip

    @classmethod
    def of(cls, j: dict[str, Any]) -> Journey:
        """From the journey service's journey (a list item, or a map's `journey`)."""
        return cls(id=strawberry.ID(j["id"]), key=j["key"], name=j["name"], status=j["status"], owner=j["owner"],
                   team=j["team"], state=analytics.JourneyState(j["state"]),
                   improves_journey_id=j["improves_journey_id"])  # fmt: skip


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class JourneyEdge:
    node: Journey
    cursor: str


@strawberry.type(description="A page of journeys (Relay connection); `after` takes an edge's cursor.")
class JourneyConnection:
    edges: list[JourneyEdge]
    page_info: PageInfo


MAX_PAGE = 100  # the journey service's batch of maps takes as many


async def _journeys(
    info: Info[Context, None],
    first: int = 20,
    after: str | None = None,
    status: str | None = None,
    q: str | None = None,
) -> JourneyConnection:
    if not 1 <= first <= MAX_PAGE:
        raise ValueError(f"`first` is 1 to {MAX_PAGE}.")
    params = {"limit": first, "cursor": after, "status": status, "q": q}
    page = await info.context.get("journey", "/v1/journeys", params={k: v for k, v in params.items() if v is not None})
    edges = [JourneyEdge(node=Journey.of(j), cursor=encode_cursor(UUID(j["id"]))) for j in page["items"]]
    return JourneyConnection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page["next_cursor"] is not None, end_cursor=edges[-1].cursor if edges else None
        ),
    )


def _prefetch(load: Awaitable[Any]) -> None:
    """A load started early; a field that needs it awaits it (and meets its error), else it is dropped."""
    asyncio.ensure_future(load).add_done_callback(lambda done: done.cancelled() or done.exception())


async def _journey(
    info: Info[Context, None], id: strawberry.ID | None = None, key: str | None = None
) -> Journey | None:
    if (id is None) == (key is None):
        raise ValueError("Give the journey's id or its key, not both and not neither.")
    # What the view will need and can already be asked for goes with the first read, not after it:
    # the scores by id, the metrics by key (the loaders keep them for the fields that read them).
    ctx, selected = info.context, list(info.selected_fields)
    steps = _selected(selected, ["journey", "stages", "steps"]) or set()
    if id is None:
        for name in steps & {"nps", "csat", "ces"}:
            _prefetch(ctx.metrics[name].load(str(key)))
        page = await ctx.get("journey", "/v1/journeys", params={"key": key})
        return Journey.of(page["items"][0]) if page["items"] else None
    if "score" in steps or "health" in (_selected(selected, ["journey"]) or set()):
        _prefetch(ctx.scores.load(str(id)))
    journey_map = await ctx.maps.load(str(id))
    return Journey.of(journey_map["journey"]) if journey_map else None  # None: not in the caller's workspace


@strawberry.type
class Query:
    journey: Journey | None = strawberry.field(
        resolver=_journey, description="One journey by id or by key, with its map and scores."
    )
    journeys: JourneyConnection = strawberry.field(
        resolver=_journeys, description="The workspace's journeys, a page at a time (status, text search)."
    )
