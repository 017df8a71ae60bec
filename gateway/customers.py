"""The customer 360: a customer's profile, persona and consents, DNA and timeline (journey service),
responses and follow-up cases (feedback service), each read from its owning service with the caller's
token; a customer of another workspace is null."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from gateway.analytics import StageRef
from gateway.catalog import (
    MAX_SERVICE_PAGE,
    CatalogTouchpoint,
    Connection,
    Persona,
    connection_of,
    journey_by_id,
    loaders,
    page_params,
)
from gateway.feedback import Case, Response
from gateway.measures import when
from gateway.schema import Context, Journey, PageInfo


@strawberry.type(description="A consent given or withdrawn, for a purpose (and a channel, or every channel).")
class Consent:
    purpose: str
    channel: str | None
    granted: bool
    at: datetime | None


@strawberry.type
class ChannelCount:
    channel: str
    interactions: int


@strawberry.type
class OutcomeCount:
    name: str
    count: int
    value: Decimal | None


async def _met_touchpoint(root: TouchpointMet, info: Info[Context, None]) -> CatalogTouchpoint | None:
    found = await loaders(info.context).touchpoints_by_id.load(root.touchpoint_id)
    return CatalogTouchpoint.of(found) if found else None


@strawberry.type(description="A touchpoint a customer met in a journey.")
class TouchpointMet:
    touchpoint_id: strawberry.Private[str]
    interactions: int
    first_at: datetime
    last_at: datetime
    touchpoint: CatalogTouchpoint | None = strawberry.field(
        resolver=_met_touchpoint, description="Null when the touchpoint is gone from the catalogue."
    )


@strawberry.type(description="A customer in one journey: how, how far and through which touchpoints.")
class JourneyDna:
    journey_id: strawberry.Private[str]
    member_by: list[str] = strawberry.field(description="interaction and/or persona.")
    stage_reached: StageRef | None = strawberry.field(description="The furthest stage met; null: by persona only.")
    interactions: int
    channels: list[ChannelCount]
    touchpoints: list[TouchpointMet] = strawberry.field(description="In the order first met.")
    first_seen: datetime | None
    last_seen: datetime | None
    journey: Journey | None = strawberry.field(
        resolver=journey_by_id, description="Null when the journey is gone from the journey service."
    )


def _channels(items: list[dict[str, Any]]) -> list[ChannelCount]:
    return [ChannelCount(channel=c["channel"], interactions=c["interactions"]) for c in items]


@strawberry.type(description="A customer's DNA (journey service): visits, channels, outcomes and journeys.")
class CustomerDna:
    visitor_type: str
    visits: int = strawberry.field(description="Runs of interactions separated by more than 30 minutes.")
    interactions: int
    first_seen: datetime | None
    last_seen: datetime | None
    channels: list[ChannelCount]
    outcomes: list[OutcomeCount]
    journeys: list[JourneyDna]

    @classmethod
    def of(cls, d: dict[str, Any]) -> CustomerDna:
        journeys = [
            JourneyDna(
                journey_id=j["journey_id"], member_by=j["member_by"],
                stage_reached=StageRef(**{**s, "id": strawberry.ID(s["id"])}) if (s := j["stage_reached"]) else None,
                interactions=j["interactions"], channels=_channels(j["channels"]),
                touchpoints=[TouchpointMet(touchpoint_id=t["touchpoint_id"], interactions=t["interactions"],
                                           first_at=datetime.fromisoformat(t["first_at"]),
                                           last_at=datetime.fromisoformat(t["last_at"])) for t in j["touchpoints"]],
                first_seen=when(j["first_seen"]), last_seen=when(j["last_seen"]),
            )
            for j in d["journeys"]
        ]  # fmt: skip
        outcomes = [OutcomeCount(name=o["name"], count=o["count"], value=None if o["value"] is None else
                                 Decimal(o["value"])) for o in d["outcomes"]]  # fmt: skip
        return cls(visitor_type=d["visitor_type"], visits=d["visits"], interactions=d["interactions"],
                   first_seen=when(d["first_seen"]), last_seen=when(d["last_seen"]),
                   channels=_channels(d["channels"]), outcomes=outcomes, journeys=journeys)  # fmt: skip


@strawberry.type(description="An interaction or an outcome of a customer.")
class TimelineItem:
    kind: str = strawberry.field(description="interaction or outcome.")
    id: strawberry.ID
    event_id: str
    occurred_at: datetime
    touchpoint_key: str | None
    channel: str | None
    journey_key: str | None
    name: str | None = strawberry.field(description="The outcome's name (outcomes only).")
    value: Decimal | None
    currency: str | None
    properties: JSON

    @classmethod
    def of(cls, t: dict[str, Any]) -> TimelineItem:
        return cls(kind=t["kind"], id=strawberry.ID(t["id"]), event_id=t["event_id"],
                   occurred_at=datetime.fromisoformat(t["occurred_at"]), touchpoint_key=t["touchpoint"],
                   channel=t["channel"], journey_key=t["journey"], name=t["name"],
                   value=None if t["value"] is None else Decimal(t["value"]), currency=t["currency"],
                   properties=t["properties"])  # fmt: skip


@strawberry.type
class TimelineEdge:
    node: TimelineItem
    cursor: str | None = strawberry.field(
        description="The page's last edge carries the cursor of the items after it (null on the last page); the "
        "journey service hands out a cursor per page, not per item."
    )


@strawberry.type(description="A page of a customer's timeline, newest first; `after` takes `pageInfo.endCursor`.")
class TimelineConnection:
    edges: list[TimelineEdge]
    page_info: PageInfo


async def _timeline(root: Customer, info: Info[Context, None], first: int = 20, after: str | None = None) -> (
    TimelineConnection
):  # fmt: skip
    params = page_params(first, after, MAX_SERVICE_PAGE)
    page = await info.context.get("journey", f"{root.path}/timeline", params=params)
    edges = [TimelineEdge(node=TimelineItem.of(t), cursor=None) for t in page["items"]]
    if edges:
        edges[-1].cursor = page["next_cursor"]
    return TimelineConnection(
        edges=edges, page_info=PageInfo(has_next_page=page["next_cursor"] is not None, end_cursor=page["next_cursor"])
    )


async def _dna(root: Customer, info: Info[Context, None]) -> CustomerDna:
    return CustomerDna.of(await info.context.get("journey", f"{root.path}/dna"))


async def _persona(root: Customer, info: Info[Context, None]) -> Persona | None:
    found = await loaders(info.context).personas_by_id.load(root.persona_id) if root.persona_id else None
    return Persona.of(found) if found else None


async def _responses(
    root: Customer,
    info: Info[Context, None],
    first: int = 20,
    after: str | None = None,
    survey_id: strawberry.ID | None = None,
    touchpoint: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Connection[Response]:
    params = page_params(first, after, MAX_SERVICE_PAGE, customer=root.external_id, survey_id=survey_id,
                         touchpoint=touchpoint, since=since, until=until)  # fmt: skip
    return connection_of(await info.context.get("feedback", "/v1/responses", params=params), Response.of)


async def _cases(root: Customer, info: Info[Context, None]) -> list[Case]:
    cases, cursor = [], None
    while True:  # one call for up to MAX_SERVICE_PAGE cases
        params = page_params(MAX_SERVICE_PAGE, cursor, MAX_SERVICE_PAGE, customer=root.external_id)
        page = await info.context.get("feedback", "/v1/cases", params=params)
        cases += [Case.of(c) for c in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            return cases


@strawberry.type(description="A customer's 360: profile, persona, consents, DNA, timeline, responses and cases.")
class Customer:
    id: strawberry.ID
    external_id: str
    profile: JSON
    consents: list[Consent]
    channel_preferences: list[str] = strawberry.field(description="Preferred first.")
    existing_customer: bool
    persona_id: strawberry.Private[str | None]
    persona_rule: str | None = strawberry.field(description="The name of the persona rule that matched.")
    version: int
    created_at: datetime
    updated_at: datetime
    path: strawberry.Private[str]  # the customer's REST path in the journey service
    # Nullable: each is a call of its own; one that fails nulls only itself, with its error at its path.
    persona: Persona | None = strawberry.field(resolver=_persona, description="The persona its profile matched.")
    dna: CustomerDna | None = strawberry.field(resolver=_dna)
    timeline: TimelineConnection | None = strawberry.field(
        resolver=_timeline, description=f"Interactions and outcomes, newest first, up to {MAX_SERVICE_PAGE} a page."
    )
    responses: Connection[Response] | None = strawberry.field(
        resolver=_responses, description=f"Its survey responses, oldest first, up to {MAX_SERVICE_PAGE} a page."
    )
    cases: list[Case] | None = strawberry.field(resolver=_cases, description="The follow-up cases of its responses.")

    @classmethod
    def of(cls, c: dict[str, Any], path: str) -> Customer:
        consents = [Consent(purpose=k["purpose"], channel=k["channel"], granted=k["granted"], at=when(k["at"]))
                    for k in c["consents"]]  # fmt: skip
        return cls(id=strawberry.ID(c["id"]), external_id=c["external_id"], profile=c["profile"], consents=consents,
                   channel_preferences=c["channel_preferences"], existing_customer=c["existing_customer"],
                   persona_id=c["persona_id"], persona_rule=c["persona_rule"], version=c["version"],
                   created_at=datetime.fromisoformat(c["created_at"]),
                   updated_at=datetime.fromisoformat(c["updated_at"]), path=path)  # fmt: skip


async def _customer(info: Info[Context, None], external_id: str) -> Customer | None:
    path = f"/v1/customers/{quote(external_id, safe='')}"
    found = await info.context.get_or_none("journey", path)
    return Customer.of(found, path) if found else None  # None: not in the caller's workspace


@strawberry.type
class CustomerQuery:
    customer: Customer | None = strawberry.field(
        resolver=_customer, description="A customer's 360 by the CRM's id; null when the workspace has none."
    )
