"""The feedback service read through the gateway: surveys, responses, follow-up cases, NPS, CSAT and
CES by any slice (with n, interval, method and `asOf`), and the comments' sentiment and themes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from gateway.analytics import ThemeCount
from gateway.catalog import (
    MAX_SERVICE_PAGE,
    Connection,
    as_uuid,
    connection_of,
    page_params,
    rest_params,
)
from gateway.measures import Metric, when
from gateway.schema import Context

# Surveys, responses, cases -------------------------------------------------------------------------


@strawberry.type(description="What a survey asks about: a journey, a stage, a touchpoint, or the relationship.")
class SurveyTarget:
    type: str
    journey_key: str | None
    stage_key: str | None
    touchpoint_key: str | None


@strawberry.type
class ChoiceOption:
    key: str
    text: JSON = strawberry.field(description="Text per language (BCP 47 tag → text).")


@strawberry.type
class Question:
    key: str
    type: str
    required: bool
    text: JSON = strawberry.field(description="Text per language (BCP 47 tag → text).")
    options: list[ChoiceOption]


@strawberry.type(description="A survey with its current questions (feedback service).")
class Survey:
    id: strawberry.ID
    key: str
    name: str
    kind: str
    status: str
    target: SurveyTarget
    default_language: str
    version: int = strawberry.field(description="The current questionnaire version.")
    revision: int = strawberry.field(description="The survey's own version as an aggregate.")
    questions: list[Question]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, s: dict[str, Any]) -> Survey:
        t = s["target"]
        questions = [Question(key=q["key"], type=q["type"], required=q["required"], text=q["text"],
                              options=[ChoiceOption(key=o["key"], text=o["text"]) for o in q["options"]])
                     for q in s["questions"]]  # fmt: skip
        return cls(id=strawberry.ID(s["id"]), key=s["key"], name=s["name"], kind=s["kind"], status=s["status"],
                   target=SurveyTarget(type=t["type"], journey_key=t["journey_key"], stage_key=t["stage_key"],
                                       touchpoint_key=t["touchpoint_key"]),
                   default_language=s["default_language"], version=s["version"], revision=s["revision"],
                   questions=questions, created_at=datetime.fromisoformat(s["created_at"]),
                   updated_at=datetime.fromisoformat(s["updated_at"]))  # fmt: skip


@strawberry.type(description="A survey response (feedback service).")
class Response:
    id: strawberry.ID
    response_id: str | None = strawberry.field(description="The sender's own id of the response.")
    survey_id: strawberry.ID
    survey_version: int
    customer_external_id: str | None
    journey_key: str | None
    stage_key: str | None
    touchpoint_key: str | None
    channel: str | None
    submitted_at: datetime
    answers: JSON
    comment: str | None
    language: str | None
    metadata: JSON
    nps: int | None
    nps_category: str | None
    csat: int | None
    ces: int | None
    sentiment: float | None = strawberry.field(description="−1..1, computed shortly after the write.")
    themes: list[str] | None
    created_at: datetime

    @classmethod
    def of(cls, r: dict[str, Any]) -> Response:
        return cls(**{**r, "id": strawberry.ID(r["id"]), "survey_id": strawberry.ID(r["survey_id"]),
                      "submitted_at": datetime.fromisoformat(r["submitted_at"]),
                      "created_at": datetime.fromisoformat(r["created_at"])})  # fmt: skip


@strawberry.type(description="A follow-up case opened for a response (feedback service's closed loop).")
class Case:
    id: strawberry.ID = strawberry.field(description="The id of the response it follows up (one case per response).")
    response_id: strawberry.ID
    rule_id: strawberry.ID | None
    rule_name: str | None
    reason: str
    status: str
    assignee: str | None
    due_at: datetime | None
    survey_id: strawberry.ID
    customer_external_id: str | None
    touchpoint_key: str | None
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, c: dict[str, Any]) -> Case:
        return cls(id=strawberry.ID(c["id"]), response_id=strawberry.ID(c["response_id"]), rule_id=c["rule_id"],
                   rule_name=c["rule_name"], reason=c["reason"], status=c["status"], assignee=c["assignee"],
                   due_at=when(c["due_at"]), survey_id=strawberry.ID(c["survey_id"]),
                   customer_external_id=c["customer_external_id"], touchpoint_key=c["touchpoint_key"],
                   version=c["version"], created_at=datetime.fromisoformat(c["created_at"]),
                   updated_at=datetime.fromisoformat(c["updated_at"]))  # fmt: skip


async def _surveys(
    info: Info[Context, None],
    first: int = 20,
    after: str | None = None,
    status: str | None = None,
    kind: str | None = None,
    touchpoint: str | None = None,
) -> Connection[Survey]:
    params = page_params(first, after, MAX_SERVICE_PAGE, status=status, kind=kind, touchpoint=touchpoint)
    return connection_of(await info.context.get("feedback", "/v1/surveys", params=params), Survey.of)


async def _survey(info: Info[Context, None], id: strawberry.ID) -> Survey | None:
    found = await info.context.get_or_none("feedback", f"/v1/surveys/{as_uuid(str(id), 'a survey')}")
    return Survey.of(found) if found else None  # None: not in the caller's workspace


async def _cases(
    info: Info[Context, None],
    first: int = 20,
    after: str | None = None,
    status: str | None = None,
    assignee: str | None = None,
    touchpoint: str | None = None,
) -> Connection[Case]:
    params = page_params(first, after, MAX_SERVICE_PAGE, status=status, assignee=assignee, touchpoint=touchpoint)
    return connection_of(await info.context.get("feedback", "/v1/cases", params=params), Case.of)


# Metrics and comments -----------------------------------------------------------------------------


@strawberry.type(description="One dimension of a group and its value, e.g. touchpoint = shop (null: none set).")
class GroupKey:
    by: str
    value: str | None


@strawberry.type(description="The difference to the comparison period, with its interval and test.")
class MetricComparison:
    previous: Metric
    difference: float = strawberry.field(description="current − previous (adjusted NPS, CSAT share, or CES mean).")
    low: float
    high: float
    p_value: float
    statistic: float
    method: str


@strawberry.type(description="The metric of every matching answer (`group` empty) or of one group of them.")
class MetricSlice:
    group: list[GroupKey]
    metric: Metric
    adjusted: float | None = strawberry.field(description="NPS only: the adjusted-Wald point estimate.")
    promoters: int | None
    passives: int | None
    detractors: int | None
    satisfied: int | None = strawberry.field(description="CSAT only: answers of 4 or 5.")
    comparison: MetricComparison | None

    @classmethod
    def of(cls, v: dict[str, Any], method: str, as_of: datetime | None) -> MetricSlice:
        c = v.get("comparison")
        comparison = c and MetricComparison(
            previous=Metric.of(c["previous"], method, as_of), difference=c["difference"], low=c["interval_low"],
            high=c["interval_high"], p_value=c["p_value"], statistic=c["statistic"], method=c["method"],
        )  # fmt: skip
        return cls(group=[GroupKey(by=k, value=x) for k, x in v.get("group", {}).items()],
                   metric=Metric.of(v, method, as_of), adjusted=v.get("adjusted"), promoters=v.get("promoters"),
                   passives=v.get("passives"), detractors=v.get("detractors"), satisfied=v.get("satisfied"),
                   comparison=comparison)  # fmt: skip


@strawberry.type(description="NPS, CSAT or CES of the matching answers, overall and per group (feedback service).")
class MetricResult:
    metric: str
    method: str
    level: float = strawberry.field(description="The intervals' confidence level.")
    source: str = strawberry.field(description="projection (the rollups, complete up to asOf) or raw (a scan).")
    rollup_level: str | None
    since: datetime | None
    until: datetime | None
    compare_since: datetime | None
    compare_until: datetime | None
    overall: MetricSlice
    groups: list[MetricSlice]
    as_of: datetime | None = strawberry.field(description="The answer holds every response stored up to this time.")
    computed_at: datetime

    @classmethod
    def of(cls, r: dict[str, Any]) -> MetricResult:
        as_of, method, compared = when(r["as_of"]), r["method"], r["compared_window"] or {}
        return cls(metric=r["metric"], method=method, level=r["level"], source=r["source"],
                   rollup_level=r["rollup_level"], since=when(r["window"]["since"]), until=when(r["window"]["until"]),
                   compare_since=when(compared.get("since")), compare_until=when(compared.get("until")),
                   overall=MetricSlice.of(r["overall"], method, as_of),
                   groups=[MetricSlice.of(g, method, as_of) for g in r["groups"]], as_of=as_of,
                   computed_at=datetime.fromisoformat(r["computed_at"]))  # fmt: skip


def _metric_query(name: str) -> Callable[..., Awaitable[MetricResult]]:
    """The resolver of one metric; its arguments are the REST query parameters of /v1/metrics/<name>."""

    async def resolve(
        info: Info[Context, None],
        survey: list[strawberry.ID] | None = None,
        journey: list[str] | None = None,
        stage: list[str] | None = None,
        touchpoint: list[str] | None = None,
        channel: list[str] | None = None,
        metadata: list[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        compare_since: datetime | None = None,
        compare_until: datetime | None = None,
        group_by: list[str] | None = None,
        source: str = "auto",
    ) -> MetricResult:
        params = rest_params(survey=survey, journey=journey, stage=stage, touchpoint=touchpoint, channel=channel,
                       metadata=metadata, since=since, until=until, compare_since=compare_since,
                       compare_until=compare_until, group_by=group_by, source=source)  # fmt: skip
        return MetricResult.of(await info.context.get("feedback", f"/v1/metrics/{name}", params=params))

    return resolve


METRIC_HELP = (
    " of the answers matching survey, journey, stage, touchpoint, channel, metadata (key:value) and since/until; "
    "groupBy survey, journey, stage, touchpoint, channel, day, week, month or metadata.<key>; compareSince/"
    "compareUntil add a comparison period."
)


@strawberry.type(description="The analysed comments of one touchpoint, stage or journey.")
class CommentSummary:
    group: str | None = strawberry.field(description="The touchpoint, stage or journey key (null: none set).")
    comments: int
    mean_sentiment: float | None
    positive: int = strawberry.field(description="Sentiment ≥ 0.05.")
    neutral: int
    negative: int = strawberry.field(description="Sentiment ≤ −0.05.")
    themes: list[ThemeCount]


@strawberry.type(description="Sentiment and themes of the analysed comments (feedback service).")
class CommentSummaries:
    group_by: str
    pending: int = strawberry.field(description="Comments in the filter not analysed yet.")
    groups: list[CommentSummary]
    as_of: datetime = strawberry.field(description="The groups hold every comment analysed by then.")

    @classmethod
    def of(cls, s: dict[str, Any]) -> CommentSummaries:
        groups = [CommentSummary(group=g["group"], comments=g["comments"], mean_sentiment=g["mean_sentiment"],
                                 positive=g["positive"], neutral=g["neutral"], negative=g["negative"],
                                 themes=[ThemeCount(**t) for t in g["themes"]])
                  for g in s["groups"]]  # fmt: skip
        return cls(
            group_by=s["group_by"], pending=s["pending"], groups=groups, as_of=datetime.fromisoformat(s["as_of"])
        )


async def _comments(
    info: Info[Context, None],
    group_by: str = "touchpoint",
    survey: list[strawberry.ID] | None = None,
    touchpoint: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> CommentSummaries:
    params = rest_params(group_by=group_by, survey=survey, touchpoint=touchpoint, since=since, until=until)
    return CommentSummaries.of(await info.context.get("feedback", "/v1/comments/summary", params=params))


@strawberry.type
class FeedbackQuery:
    # Nullable, so that a field that fails leaves the other root fields of the document answered.
    surveys: Connection[Survey] | None = strawberry.field(
        resolver=_surveys, description=f"The workspace's surveys, up to {MAX_SERVICE_PAGE} a page (status, kind, "
        "touchpoint)."
    )  # fmt: skip
    survey: Survey | None = strawberry.field(
        resolver=_survey, description="One survey; null when the workspace has none."
    )
    cases: Connection[Case] | None = strawberry.field(
        resolver=_cases, description=f"Follow-up cases, up to {MAX_SERVICE_PAGE} a page (status, assignee, touchpoint)."
    )
    nps: MetricResult | None = strawberry.field(resolver=_metric_query("nps"), description="NPS" + METRIC_HELP)
    csat: MetricResult | None = strawberry.field(resolver=_metric_query("csat"), description="CSAT" + METRIC_HELP)
    ces: MetricResult | None = strawberry.field(resolver=_metric_query("ces"), description="CES" + METRIC_HELP)
    comments: CommentSummaries | None = strawberry.field(
        resolver=_comments, description="Sentiment and themes of the analysed comments per touchpoint, stage or "
        "journey (groupBy), filtered by survey, touchpoint and since/until."
    )  # fmt: skip
