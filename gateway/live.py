"""Subscriptions: a journey's scores, NPS and responses as they change, over WebSocket with the
graphql-transport-ws protocol only (the legacy `graphql-ws` protocol is refused), fed by the
services' events through the process's one EventHub.

- The caller is the token of the `connection_init` payload (`{"Authorization": "Bearer ..."}`),
  verified as an HTTP request's is; a missing or bad token closes the socket with 4403, and the
  socket is closed (4403) when the token expires. At most `GATEWAY_MAX_SUBSCRIPTIONS_PER_CONNECTION`
  operations run at once on one connection; the one past it gets an error.
- Every subscription checks its journey with the journey service under the caller's token (another
  workspace's journey is not found) and listens to the caller's workspace only.
- `scoreUpdated` and `npsUpdated` send the current value first, then the value after each event that
  can change it, read from the service with the caller's token (so the services still decide what
  it may see); events arriving meanwhile are coalesced into one read. `responseSubmitted` sends each
  response of the journey; a reader too slow for them gets an error (see gateway/events.py), never
  a silent gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Hashable, Iterator, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import jwt
import strawberry
import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import SchemaExtension
from strawberry.fastapi import GraphQLRouter
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import Info
from strawberry.types.unset import UNSET, UnsetType

from gateway.events import AnyEvent, EventHub, EventsMissed, Listener
from gateway.feedback import Response
from gateway.measures import Health, Metric, TouchpointScore, when
from gateway.schema import Context, Touchpoint
from gateway.services import Services
from services.common.auth import Caller, TokenVerifier
from services.common.errors import Problem

log = structlog.get_logger(__name__)

# The services' event types (their AsyncAPI documents): the gateway imports no service code.
RESPONSE_SUBMITTED = "feedback.response.submitted"
SCORE_UPDATED = "scoring.score.updated"

NOBODY = Caller(workspace_id="", subject="", scopes=frozenset())
SETTLE_SECONDS = 10.0  # longest wait for the feedback service's counts to include a response


class LiveError(ValueError):
    """What a subscriber can act on, with its code: a ValueError, so the masking shows it (safety.py);
    graphql-core carries its `extensions` into the GraphQL error."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.extensions = {"code": code}


class LiveContext(Context):
    """A WebSocket connection's context, one for all its operations. Its caller comes with
    `connection_init` (LiveRouter.on_ws_connect); strawberry runs no operation before that."""

    def __init__(self, services: Services, hub: EventHub) -> None:
        super().__init__(services=services, authorization="", caller=NOBODY)
        self.hub = hub
        self._expiry: asyncio.Task[None] | None = None

    def for_operation(self) -> LiveContext:
        """A context of its own for one operation on this connection: the same caller, new loaders.
        strawberry keeps one context per connection for hours; a loader kept in it would answer a
        later query with what an earlier one read."""
        fresh = LiveContext(self.services, self.hub)
        fresh.caller, fresh.authorization = self.caller, self.authorization
        fresh.request, fresh.connection_params = self.request, self.connection_params
        return fresh

    def admit(self, caller: Caller, authorization: str, expires_at: float) -> None:
        self.caller, self.authorization = caller, authorization
        self._expiry = asyncio.create_task(self._close_at(expires_at))

    async def _close_at(self, expires_at: float) -> None:
        await asyncio.sleep(max(0.0, expires_at - time.time()))
        assert isinstance(self.request, WebSocket)
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            await self.request.close(code=4403, reason="The token has expired; connect again with a new one.")

    def end(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()


class ContextPerOperation(SchemaExtension):
    """Each operation on a WebSocket runs with `LiveContext.for_operation`."""

    def on_operation(self) -> Iterator[None]:
        if isinstance(self.execution_context.context, LiveContext):
            self.execution_context.context = self.execution_context.context.for_operation()
        yield


def _authorization(params: Any) -> str:
    """The payload's `Authorization` entry, its name in any case."""
    if isinstance(params, dict):
        for name, value in params.items():
            if isinstance(name, str) and name.lower() == "authorization" and isinstance(value, str):
                return value
    return ""


class TextFrames(ASGIWebSocketAdapter):
    """Protocol messages as text frames, also when the router encodes JSON to bytes (orjson): clients
    refuse binary frames (gql: "Binary data received in the websocket")."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        encoded = self.view.encode_json(message)
        try:
            await self.ws.send_text(encoded.decode() if isinstance(encoded, bytes) else encoded)
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc


class LiveRouter(GraphQLRouter[Context, None]):
    """`/graphql` over HTTP and over WebSocket with graphql-transport-ws (see the module's docstring)."""

    websocket_adapter_class = TextFrames

    def __init__(self, schema: strawberry.Schema, *, verifier: TokenVerifier, **options: Any) -> None:
        super().__init__(schema, subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,), **options)
        self.verifier = verifier

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        assert isinstance(context, LiveContext)
        authorization = _authorization(context.connection_params)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ConnectionRejectionError()
        try:
            caller = await self.verifier.verify(token.strip())
        except Problem as problem:
            log.info("a WebSocket connection refused", reason=problem.detail)
            raise ConnectionRejectionError() from None
        # Verified just now (its signature and `exp` included): read the expiry to close the socket then.
        claims = jwt.decode(token.strip(), options={"verify_signature": False})
        context.admit(caller, f"Bearer {token.strip()}", float(claims["exp"]))
        return UnsetType()  # a connection_ack without a payload

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        try:
            return await super().run(request, context, root_value)
        finally:
            if isinstance(context, LiveContext):
                context.end()  # the connection is over: no expiry to wait for


@strawberry.type(description="A touchpoint with its scores in a journey.")
class ScoredTouchpoint:
    touchpoint: Touchpoint
    score: TouchpointScore


@strawberry.type(description="A journey's latest scores (scoring service, its default scope).")
class JourneyScores:
    journey_id: strawberry.ID
    snapshot_id: strawberry.ID
    computed_at: datetime
    health: Health
    touchpoints: list[ScoredTouchpoint]

    @classmethod
    def of(cls, s: dict[str, Any]) -> JourneyScores:
        h = s["health"]
        return cls(
            journey_id=strawberry.ID(s["journey_id"]),
            snapshot_id=strawberry.ID(s["snapshot_id"]),
            computed_at=datetime.fromisoformat(s["computed_at"]),
            health=Health(
                score=h["score"],
                low=h["low"],
                high=h["high"],
                n=h["n"],
                method=h["method"],
                as_of=when(s["as_of"]),
            ),
            touchpoints=[
                ScoredTouchpoint(
                    touchpoint=Touchpoint(
                        id=strawberry.ID(t["touchpoint_id"]), key=t["key"], name=t["name"], channel=t["channel"]
                    ),
                    score=TouchpointScore.of(t),
                )
                for t in s["touchpoints"]
            ],
        )


def _live(info: Info[Context, None]) -> LiveContext:
    context = info.context
    assert isinstance(context, LiveContext)  # a subscription is only started over WebSocket
    return context


async def _journey(ctx: LiveContext, journey_id: strawberry.ID) -> dict[str, Any]:
    """The journey, from the journey service under the caller's token: another workspace's is not found."""
    try:
        canonical = UUID(str(journey_id))
    except ValueError:
        raise LiveError(f"{journey_id!r} is not a journey id (a UUID).", "BAD_USER_INPUT") from None
    journey: dict[str, Any] | None = await ctx.get_or_none("journey", f"/v1/journeys/{canonical}")
    if journey is None:
        raise LiveError(f"There is no journey {canonical} in your workspace.", "NOT_FOUND")
    return journey


@contextlib.contextmanager
def _listening(
    ctx: LiveContext,
    event_type: str,
    accepts: Callable[[AnyEvent], bool],
    key: Callable[[AnyEvent], Hashable | None] = lambda _: None,
) -> Iterator[Listener]:
    """The caller's workspace's events of one type; a gap in them ends the subscription with an error."""
    try:
        with ctx.hub.listen(
            types=frozenset({event_type}), workspace_id=ctx.caller.workspace_id, accepts=accepts, key=key
        ) as listener:
            yield listener
    except EventsMissed as missed:
        raise LiveError(f"This subscription has ended: {missed}.", "EVENTS_MISSED") from None


async def _nps(ctx: LiveContext, journey_key: str, since: datetime | None) -> Metric:
    """The journey's NPS as the feedback service answers it, once its counts include the events up to
    `since` (its `as_of`; it counts responses in a consumer of their events), or after SETTLE_SECONDS."""
    delay, deadline = 0.05, time.monotonic() + SETTLE_SECONDS
    while True:
        result = await ctx.get("feedback", "/v1/metrics/nps", params={"journey": journey_key})
        as_of = when(result["as_of"])
        settled = since is None or (as_of is not None and as_of >= since)
        if settled or time.monotonic() > deadline:
            return Metric.of(result["overall"], result["method"], as_of)
        await asyncio.sleep(delay)
        delay = min(2 * delay, 1.0)


# The resolvers check what they can before they return the stream: a failure is then the operation's
# `error` message, before any `next`.


async def _nps_updated(info: Info[Context, None], journey_id: strawberry.ID) -> AsyncGenerator[Metric, None]:
    ctx = _live(info)
    return _nps_updates(ctx, (await _journey(ctx, journey_id))["key"])


async def _nps_updates(ctx: LiveContext, key: str) -> AsyncGenerator[Metric, None]:
    def answered(event: AnyEvent) -> bool:  # responses name their journey by key
        return event.data.get("journey_key") == key and event.data.get("nps") is not None

    with _listening(ctx, RESPONSE_SUBMITTED, answered, key=lambda _: "nps") as events:
        last = await _nps(ctx, key, None)
        yield last
        async for event in events:
            metric = await _nps(ctx, key, event.occurred_at)
            if metric != last:
                last = metric
                yield metric


async def _scores(ctx: LiveContext, journey_id: str) -> JourneyScores | None:
    scores = await ctx.get_or_none("scoring", f"/v1/journeys/{journey_id}/scores")
    return JourneyScores.of(scores) if scores is not None else None  # None: not scored yet


async def _score_updated(info: Info[Context, None], journey_id: strawberry.ID) -> AsyncGenerator[JourneyScores, None]:
    ctx = _live(info)
    return _score_updates(ctx, (await _journey(ctx, journey_id))["id"])


async def _score_updates(ctx: LiveContext, journey_id: str) -> AsyncGenerator[JourneyScores, None]:
    def rescored(event: AnyEvent) -> bool:  # the journey's default scope (no persona, no window)
        return event.data.get("journey_id") == journey_id and not any((event.data.get("scope") or {}).values())

    with _listening(ctx, SCORE_UPDATED, rescored, key=lambda _: "scores") as events:
        last = await _scores(ctx, journey_id)
        if last is not None:
            yield last
        async for _ in events:
            scores = await _scores(ctx, journey_id)
            if scores is not None and (last is None or scores.snapshot_id != last.snapshot_id):
                last = scores
                yield scores


async def _response_submitted(info: Info[Context, None], journey_id: strawberry.ID) -> AsyncGenerator[Response, None]:
    ctx = _live(info)
    # The response comes from the event, not from the feedback service: the scope is checked here.
    if not ctx.caller.has("feedback:read"):
        raise LiveError("Responses need the scope feedback:read; this token does not have it.", "FORBIDDEN")
    return _responses(ctx, (await _journey(ctx, journey_id))["key"])


async def _responses(ctx: LiveContext, key: str) -> AsyncGenerator[Response, None]:
    with _listening(ctx, RESPONSE_SUBMITTED, lambda e: e.data.get("journey_key") == key) as events:
        async for event in events:
            yield Response.of(event.data)


@strawberry.type
class Subscription:
    score_updated: AsyncGenerator[JourneyScores, None] = strawberry.subscription(
        resolver=_score_updated,
        description="The journey's scores now (once it has any), then each new snapshot of them.",
    )
    nps_updated: AsyncGenerator[Metric, None] = strawberry.subscription(
        resolver=_nps_updated,
        description="The journey's NPS now, then after responses with an NPS answer (a burst: one update).",
    )
    response_submitted: AsyncGenerator[Response, None] = strawberry.subscription(
        resolver=_response_submitted,
        description="Each response submitted about the journey from now on (needs feedback:read).",
    )
