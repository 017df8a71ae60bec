"""The journey's analytics in the unified view: who it is for and the target journeys that improve it
(journey service, mostly from its map), its funnel and top paths (journey service), its NPS over time
and the sentiment and themes of the comments about each step's touchpoint (feedback service). Its
portfolio, moments of truth and attribution are in gateway/snapshot.py.

Nothing is computed here: each number is the service's, with the n, interval, method and `as_of` it
gives. Every field is read only when selected; the reads that a service can batch go through the
request's loaders (`AnalyticsLoaders`, one call per service and level), the funnel and the paths are
one call per journey (the journey service reads them one journey at a time)."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import strawberry
from strawberry.dataloader import DataLoader

from gateway.measures import when

if TYPE_CHECKING:
    from gateway.catalog import Persona
    from gateway.schema import Context, Journey, Step

FEEDBACK_JOURNEYS, FEEDBACK_TOUCHPOINTS = 100, 500  # the feedback service's limits per read
JOURNEY_PAGE = 500  # the journey service's largest page
T = TypeVar("T")
TIMES = ("since", "until", "as_of")  # the services' date-time fields in these answers


def from_answer(cls: type[T], data: dict[str, Any], **values: Any) -> T:
    """`cls` from a service's answer: its fields of the same names (times parsed), but for `values`."""
    names = [f.name for f in dataclasses.fields(cls) if f.name not in values]  # type: ignore[arg-type]
    return cls(**{n: when(data[n]) if n in TIMES else data[n] for n in names}, **values)


def _window(since: datetime | None, until: datetime | None) -> list[tuple[str, str]]:
    return [(name, t.isoformat()) for name, t in (("since", since), ("until", until)) if t is not None]


Since = Annotated[datetime | None, strawberry.argument(description="From this time on (UTC without a zone).")]
Until = Annotated[datetime | None, strawberry.argument(description="Before this time (UTC without a zone).")]


# Who it is for and who owns it -----------------------------------------------------------------


@strawberry.enum(description="A journey as it is today, or a target design (which may improve a current one).")
class JourneyState(enum.Enum):
    CURRENT = "current"
    TARGET = "target"


# The persona is the catalogue's type (gateway/catalog.py, the root `personas`), the journey the schema's:
# both modules import this one, so their types are named lazily, their classes imported when a field resolves.
JourneyPersona = Annotated["Persona", strawberry.lazy("gateway.catalog")]
JourneyType = Annotated["Journey", strawberry.lazy("gateway.schema")]


async def journey_persona(root: Journey, info: strawberry.Info[Context, None]) -> JourneyPersona | None:
    from gateway.catalog import Persona

    journey_map = await info.context.maps.load(str(root.id))  # the map carries its persona
    persona = journey_map["persona"] if journey_map else None
    return Persona.of(persona) if persona else None


async def journey_improves(root: Journey, info: strawberry.Info[Context, None]) -> JourneyType | None:
    from gateway.schema import Journey

    if root.improves_journey_id is None:
        return None
    journey_map = await info.context.maps.load(root.improves_journey_id)
    return Journey.of(journey_map["journey"]) if journey_map else None


async def journey_improved_by(root: Journey, info: strawberry.Info[Context, None]) -> list[JourneyType]:
    from gateway.schema import Journey

    if root.state is JourneyState.TARGET:  # a target journey improves a current one, none improves it
        return []
    return [Journey.of(t) for t in await info.context.analytics.targets.load(str(root.id))]


# Funnel ----------------------------------------------------------------------------------------


@strawberry.enum
class FunnelWindowFrom(enum.Enum):
    FIRST_STAGE = "first_stage"
    PREVIOUS_STAGE = "previous_stage"


@strawberry.enum
class FunnelBreakdown(enum.Enum):
    NONE = "none"
    PERSONA = "persona"
    CHANNEL = "channel"


@strawberry.type
class StageRef:
    id: strawberry.ID
    key: str
    name: str
    position: int


@strawberry.type
class FunnelStage:
    stage: StageRef
    customers: int
    conversion_from_previous: float | None = strawberry.field(description="Share of the previous stage's; null first.")
    conversion_overall: float | None = strawberry.field(description="Share of the first stage's customers.")
    drop_off: int = strawberry.field(description="Customers of the previous stage who did not reach this one.")
    median_seconds_from_previous: float | None


@strawberry.type
class FunnelGroup:
    group: str | None = strawberry.field(description="Persona key or entry channel; null: none / the whole funnel.")
    stages: list[FunnelStage]


@strawberry.type(description="Customers reaching each stage in order (journey service); counts, no sampling.")
class Funnel:
    window_hours: float
    window_from: FunnelWindowFrom
    since: datetime | None
    until: datetime | None
    breakdown: FunnelBreakdown
    groups: list[FunnelGroup]
    source: str = strawberry.field(description="projection, or events (computed from the interactions).")
    as_of: datetime | None


async def journey_funnel(
    root: Journey,
    info: strawberry.Info[Context, None],
    window_hours: Annotated[float, strawberry.argument(description="Conversion window in hours.")] = 720,
    window_from: FunnelWindowFrom = FunnelWindowFrom.FIRST_STAGE,
    breakdown: Annotated[
        FunnelBreakdown, strawberry.argument(description="One funnel per persona or per entry channel.")
    ] = FunnelBreakdown.NONE,
    since: Since = None,
    until: Until = None,
) -> Funnel | None:
    params = [("window_hours", str(window_hours)), ("window_from", window_from.value),
              ("breakdown", breakdown.value), *_window(since, until)]  # fmt: skip
    f = await info.context.get("journey", f"/v1/journeys/{root.id}/funnel", params=params)
    groups = [
        from_answer(FunnelGroup, g, stages=[
            from_answer(FunnelStage, s, stage=from_answer(StageRef, s["stage"])) for s in g["stages"]
        ]) for g in f["groups"]
    ]  # fmt: skip
    return from_answer(Funnel, f, window_from=FunnelWindowFrom(f["window_from"]),
                       breakdown=FunnelBreakdown(f["breakdown"]), groups=groups)  # fmt: skip


# Top paths -------------------------------------------------------------------------------------


@strawberry.enum
class PathLevel(enum.Enum):
    STAGES = "stages"
    TOUCHPOINTS = "touchpoints"


@strawberry.enum(description="none; REPEATS: A A B → A B; REVISITS: A B A C → A B C.")
class PathCollapse(enum.Enum):
    NONE = "none"
    REPEATS = "repeats"
    REVISITS = "revisits"


@strawberry.type
class PathCount:
    nodes: list[str]
    customers: int
    share: float


@strawberry.type
class SankeyNode:
    id: str = strawberry.field(description="`<depth>:<key>`, unique per depth so the diagram stays acyclic.")
    key: str
    depth: int
    customers: int


@strawberry.type
class SankeyLink:
    source: str
    target: str
    customers: int


@strawberry.type(description="The top-k paths (journey service) with counts, also as Sankey nodes and links.")
class Paths:
    level: PathLevel
    collapse: PathCollapse
    customers: int = strawberry.field(description="Customers with at least one event in the journey.")
    other_customers: int = strawberry.field(description="Customers whose path is not among the top k.")
    paths: list[PathCount]
    nodes: list[SankeyNode]
    links: list[SankeyLink]
    source: str
    as_of: datetime | None


async def journey_top_paths(
    root: Journey,
    info: strawberry.Info[Context, None],
    level: PathLevel = PathLevel.STAGES,
    collapse: PathCollapse = PathCollapse.REPEATS,
    top: Annotated[int, strawberry.argument(description="How many paths (k, 1-100).")] = 10,
    max_length: Annotated[int, strawberry.argument(description="Cut paths after this many nodes (1-50).")] = 10,
    since: Since = None,
    until: Until = None,
) -> Paths | None:
    params = [("level", level.value), ("collapse", collapse.value), ("top", str(top)),
              ("max_length", str(max_length)), *_window(since, until)]  # fmt: skip
    p = await info.context.get("journey", f"/v1/journeys/{root.id}/paths", params=params)
    return from_answer(Paths, p, level=PathLevel(p["level"]), collapse=PathCollapse(p["collapse"]),
                       paths=[PathCount(**x) for x in p["paths"]], nodes=[SankeyNode(**x) for x in p["nodes"]],
                       links=[SankeyLink(**x) for x in p["links"]])  # fmt: skip


# NPS trend -------------------------------------------------------------------------------------


@strawberry.enum(description="A trend's calendar buckets (UTC; a week starts on Monday).")
class TrendBucket(enum.Enum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@strawberry.type(description="The NPS of the answers submitted in one bucket, with n and its 95 % interval.")
class NpsBucket:
    start: date
    value: float | None
    low: float | None
    high: float | None
    n: int
    adjusted: float | None = strawberry.field(description="The adjusted-Wald point estimate.")
    promoters: int
    passives: int
    detractors: int


@strawberry.type(description="A journey's NPS per bucket (feedback service); buckets without answers are left out.")
class NpsTrend:
    bucket: TrendBucket
    buckets: list[NpsBucket]
    method: str
    source: str = strawberry.field(description="projection (the rollups, complete up to `asOf`) or raw.")
    as_of: datetime | None


TrendKey = tuple[str, TrendBucket, datetime | None, datetime | None]  # journey key, bucket, window


async def journey_nps_trend(
    root: Journey, info: strawberry.Info[Context, None], bucket: TrendBucket, since: Since = None, until: Until = None
) -> NpsTrend | None:
    return await info.context.analytics.nps_trends.load((root.key, bucket, since, until))


# Comments on each step's touchpoint ------------------------------------------------------------


@strawberry.type(description="A theme of the comments about a touchpoint (in every journey, as its sentiment).")
class ThemeCount:
    theme: str
    n: int
    mean_sentiment: float


@strawberry.type(
    description="Sentiment (−1..1) of the analysed comments about a step's touchpoint (feedback service), in every "
    "journey: the service's comment summary has no journey filter."
)
class CommentSentiment:
    comments: int
    mean_sentiment: float | None
    positive: int = strawberry.field(description="Sentiment ≥ 0.05 (VADER's convention).")
    neutral: int
    negative: int = strawberry.field(description="Sentiment ≤ −0.05.")
    as_of: datetime | None = strawberry.field(description="The comments analysed by this time are counted.")


Comments = tuple[CommentSentiment, list[ThemeCount]]
STEP_FETCHED = ("sentiment", "themes")  # the Step fields read from the comment summaries


async def touchpoint_comments(ctx: Context, journey_map: dict[str, Any]) -> dict[str, Comments]:
    """The comments about each touchpoint of the journey's steps, by touchpoint key (what `_stages`
    fetches for the Step fields of STEP_FETCHED)."""
    keys = list(dict.fromkeys(st["touchpoint"]["key"] for s in journey_map["stages"] for st in s["steps"]))
    return dict(zip(keys, await ctx.analytics.comments.load_many(keys), strict=True))


def _comments(step: Step, name: str) -> Comments:
    found = step.fetched[name]
    if isinstance(found, Exception):
        raise found  # the feedback service's error, at this step's field
    return found[step.touchpoint.key]  # type: ignore[no-any-return]


def step_sentiment(root: Step) -> CommentSentiment | None:
    return _comments(root, "sentiment")[0]


def step_themes(root: Step) -> list[ThemeCount] | None:
    return _comments(root, "themes")[1]


# The request's loaders ------------------------------------------------------------------------


class AnalyticsLoaders:
    """The batch reads behind the analytics fields, one set per request (in `Context.analytics`)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.nps_trends: DataLoader[TrendKey, NpsTrend] = DataLoader(
            self._load_nps_trends, max_batch_size=FEEDBACK_JOURNEYS
        )
        # By touchpoint key: the summary has no journey filter, so a touchpoint's comments are counted
        # over every journey; all the steps the query reached, in one call.
        self.comments: DataLoader[str, Comments] = DataLoader(self._load_comments, max_batch_size=FEEDBACK_TOUCHPOINTS)
        # By journey id: the target journeys that improve it.
        self.targets: DataLoader[str, list[dict[str, Any]]] = DataLoader(self._load_targets)

    async def _load_nps_trends(self, keys: list[TrendKey]) -> list[NpsTrend]:
        calls: dict[tuple[TrendBucket, datetime | None, datetime | None], list[str]] = {}
        for journey, bucket, since, until in keys:
            calls.setdefault((bucket, since, until), []).append(journey)
        answers = await asyncio.gather(*(self._nps_trend_call(*call, journeys) for call, journeys in calls.items()))
        by_call = dict(zip(calls, answers, strict=True))
        return [by_call[(bucket, since, until)][journey] for journey, bucket, since, until in keys]

    async def _nps_trend_call(
        self, bucket: TrendBucket, since: datetime | None, until: datetime | None, journeys: list[str]
    ) -> dict[str, NpsTrend]:
        """One grouped read for every journey (at most FEEDBACK_JOURNEYS: the loader's batch size)."""
        params = [("journey", j) for j in sorted(set(journeys))]
        params += [("group_by", "journey"), ("group_by", bucket.value), *_window(since, until)]
        result = await self.ctx.get("feedback", "/v1/metrics/nps", params=params)
        found: dict[str, list[NpsBucket]] = {j: [] for j in journeys}
        for g in result["groups"]:
            start = date.fromisoformat(g["group"][bucket.value])
            found[g["group"]["journey"]].append(
                from_answer(NpsBucket, g, start=start, low=g["interval_low"], high=g["interval_high"])
            )
        as_of = when(result["as_of"])
        return {j: NpsTrend(bucket=bucket, buckets=sorted(b, key=lambda x: x.start), method=result["method"],
                            source=result["source"], as_of=as_of) for j, b in found.items()}  # fmt: skip

    async def _load_comments(self, touchpoints: list[str]) -> list[Comments]:
        params = [("group_by", "touchpoint"), *(("touchpoint", t) for t in touchpoints)]
        result = await self.ctx.get("feedback", "/v1/comments/summary", params=params)
        as_of = when(result["as_of"])
        groups = {g["group"]: g for g in result["groups"]}
        none: dict[str, Any] = {"comments": 0, "mean_sentiment": None, "themes": []}
        none |= dict.fromkeys(("positive", "neutral", "negative"), 0)
        out = []
        for t in touchpoints:
            g = groups.get(t, none)
            out.append((from_answer(CommentSentiment, g, as_of=as_of), [ThemeCount(**x) for x in g["themes"]]))
        return out

    async def _load_targets(self, journey_ids: list[str]) -> list[list[dict[str, Any]]]:
        """The journey service lists journeys by state but not by the journey they improve: the
        workspace's target journeys are read once per level (a page of 500 a call) and matched here."""
        targets: list[dict[str, Any]] = []
        params: dict[str, Any] = {"state": "target", "limit": JOURNEY_PAGE}
        while True:
            page = await self.ctx.get("journey", "/v1/journeys", params=params)
            targets += page["items"]
            if page["next_cursor"] is None:
                break
            params = {**params, "cursor": page["next_cursor"]}
        return [[t for t in targets if t["improves_journey_id"] == j] for j in journey_ids]
