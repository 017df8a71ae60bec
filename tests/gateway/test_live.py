"""Subscriptions end to end: the three services and the gateway as processes of their own (on a NATS of
their own), a real GraphQL client (gql over graphql-transport-ws) or a bare WebSocket where the
protocol itself is under test, every number checked against what the services answer directly
(the event hub itself and a lost NATS: test_events.py)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import websockets
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

from tests.conftest import Keys, unique_name
from tests.scoring.factories import SCOPES, Stack, at, small_journey

WAIT = 30.0  # seconds: the longest any step may take before the test fails
QUIET = 2.0  # seconds without a message that count as "nothing came"

NPS = "subscription($id: ID!) { npsUpdated(journeyId: $id) { value low high n method asOf } }"
RESPONSES = """subscription($id: ID!) {
  responseSubmitted(journeyId: $id) { id customerExternalId journeyKey nps npsCategory submittedAt } }"""
SCORES = """subscription($id: ID!) {
  scoreUpdated(journeyId: $id) {
    journeyId snapshotId computedAt health { score low high n method asOf }
    touchpoints { touchpoint { id key } score { reach reachN relevance quadrant } } } }"""


def _ws_url(processes: dict[str, str]) -> str:
    return processes["gateway"].replace("http://", "ws://") + "/graphql"


class Feed:
    """A subscription read in the background: waiting for its next message with a timeout does not end
    it (cancelling gql's generator would)."""

    def __init__(self, session: Any, query: str, journey_id: str) -> None:
        self._queue: asyncio.Queue[dict[str, Any] | Exception] = asyncio.Queue()
        self.task = asyncio.create_task(
            self._read(session.subscribe(GraphQLRequest(query, variable_values={"id": journey_id})))
        )

    async def _read(self, subscription: Any) -> None:
        try:
            async for result in subscription:
                await self._queue.put(result)
        except Exception as error:  # handed to the test
            await self._queue.put(error)

    async def next(self, within: float = WAIT) -> dict[str, Any]:
        item = await asyncio.wait_for(self._queue.get(), within)
        if isinstance(item, Exception):
            raise item
        return item

    async def nothing(self) -> None:
        try:
            got = await self.next(within=QUIET)
        except TimeoutError:
            return
        pytest.fail(f"expected nothing, got {got}")


class Session:
    def __init__(self, session: Any) -> None:
        self.session, self.feeds = session, list[Feed]()

    def subscribe(self, query: str, journey_id: str) -> Feed:
        self.feeds.append(Feed(self.session, query, journey_id))
        return self.feeds[-1]


@contextlib.asynccontextmanager
async def live_session(processes: dict[str, str], headers: dict[str, str]) -> AsyncIterator[Session]:
    transport = WebsocketsTransport(
        url=_ws_url(processes),
        init_payload=headers,
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        connect_timeout=WAIT,
        ack_timeout=WAIT,
    )
    async with Client(transport=transport) as session:
        live = Session(session)
        try:
            yield live
        finally:
            for feed in live.feeds:
                feed.task.cancel()


async def journey_with_survey(stack: Stack) -> tuple[dict[str, Any], dict[str, Any]]:
    journey, _ = await stack.build_journey("buy-a-bike", [("shop", "buy", None, False)])
    return journey, await stack.survey()


def _answer(survey: dict[str, Any], customer: str, ltr: int, minutes: float = 0) -> dict[str, Any]:
    return {"survey_id": survey["id"], "customer_external_id": customer, "journey_key": "buy-a-bike",
            "submitted_at": at(minutes), "answers": {"recommend": ltr}}  # fmt: skip


async def _nps_now(stack: Stack) -> dict[str, Any]:
    response = await stack.feedback.get("/v1/metrics/nps", headers=stack.headers, params={"journey": "buy-a-bike"})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _same_nps(sent: dict[str, Any], answered: dict[str, Any]) -> None:
    overall = answered["overall"]
    assert [sent["value"], sent["low"], sent["high"], sent["n"], sent["method"]] == [
        overall["value"], overall["interval_low"], overall["interval_high"], overall["n"], answered["method"]
    ]  # fmt: skip


class TestNpsUpdated:
    async def test_a_posted_response_updates_the_nps(self, processes: dict[str, str], stack: Stack) -> None:
        journey, survey = await journey_with_survey(stack)
        await stack.responses([_answer(survey, "c1", 10), _answer(survey, "c2", 3)])
        await _counted(stack, n=2)
        async with live_session(processes, stack.headers) as session:
            updates = session.subscribe(NPS, journey["id"])
            first = (await updates.next())["npsUpdated"]  # the value now
            _same_nps(first, await _nps_now(stack))
            assert first["n"] == 2
            # a burst of three more: a promoter, a passive, a detractor
            burst = [_answer(survey, "c3", 9, 1), _answer(survey, "c4", 7, 2), _answer(survey, "c5", 0, 3)]
            await stack.responses(burst)
            seen = [first]
            while seen[-1]["n"] < 5:
                seen.append((await updates.next())["npsUpdated"])
            assert [s["n"] for s in seen] == sorted({s["n"] for s in seen})  # each one newer, none repeated
            _same_nps(seen[-1], await _nps_now(stack))
            # 2 promoters, 1 passive, 2 detractors: NPS 0 (the interval: the feedback service's adjusted Wald)
            assert seen[-1]["value"] == 0.0
            assert seen[-1]["low"] < 0 < seen[-1]["high"]
            await updates.nothing()  # nothing else happened

    async def test_another_workspaces_journey_is_not_found(self, processes: dict[str, str], stack: Stack) -> None:
        async with live_session(processes, stack.headers) as session:
            with pytest.raises(TransportQueryError, match="no journey") as raised:
                await session.subscribe(NPS, str(uuid.uuid4())).next()
            assert raised.value.errors is not None
            assert raised.value.errors[0]["extensions"]["code"] == "NOT_FOUND"


async def _counted(stack: Stack, *, n: int) -> None:
    """Until the feedback service counts n NPS answers of the journey."""
    for _ in range(int(WAIT / 0.1)):
        if (await _nps_now(stack))["overall"]["n"] == n:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the feedback service did not count {n} answers")


class TestScoreUpdated:
    async def test_new_scores_are_sent_as_the_scoring_service_answers_them(
        self, processes: dict[str, str], stack: Stack
    ) -> None:
        built = await small_journey(stack)
        journey_id, counts = built["journey"]["id"], built["scores"]["counts"]
        async with live_session(processes, stack.headers) as session:
            updates = session.subscribe(SCORES, journey_id)
            first = (await updates.next())["scoreUpdated"]
            assert first["snapshotId"] == built["scores"]["snapshot_id"]
            # one more customer, who met the ad: reach and health move, the scoring service stores new scores
            await stack.interactions([{"event_id": "c999-ad", "customer": "c999", "touchpoint": "ad",
                                       "occurred_at": at(200)}])  # fmt: skip
            latest = await stack.scores(
                journey_id, customers=counts["customers"] + 1, interactions=counts["interactions"] + 1
            )
            sent = first
            while sent["snapshotId"] != latest["snapshot_id"]:
                sent = (await updates.next())["scoreUpdated"]
        assert sent["journeyId"] == journey_id
        health = latest["health"]
        assert [sent["health"][k] for k in ("score", "low", "high", "n", "method")] == [
            health[k] for k in ("score", "low", "high", "n", "method")
        ]
        by_id = {t["touchpoint_id"]: t for t in latest["touchpoints"]}
        assert len(sent["touchpoints"]) == len(by_id) == 3
        for t in sent["touchpoints"]:
            expected = by_id[t["touchpoint"]["id"]]
            assert t["touchpoint"]["key"] == expected["key"]
            assert [t["score"][k] for k in ("reach", "reachN", "relevance", "quadrant")] == [
                expected[k] for k in ("reach", "reach_n", "relevance", "quadrant")
            ]
        ad = next(t for t in sent["touchpoints"] if t["touchpoint"]["key"] == "ad")
        assert ad["score"]["reachN"] == counts["customers"] + 1  # every customer met the ad, the new one too


class TestTenantIsolation:
    async def test_workspace_b_sees_nothing_of_a(self, processes: dict[str, str], stack: Stack) -> None:
        """Both workspaces have a journey `buy-a-bike`, the key responses name their journey by."""
        other = stack.other(unique_name("gw-b"))
        journey_a, survey_a = await journey_with_survey(stack)
        journey_b, survey_b = await journey_with_survey(other)
        async with live_session(processes, stack.headers) as a, live_session(processes, other.headers) as b:
            # A's journey does not exist for B
            for query in (NPS, RESPONSES, SCORES):
                with pytest.raises(TransportQueryError, match="no journey"):
                    await b.subscribe(query, journey_a["id"]).next()
            a_responses, b_responses = a.subscribe(RESPONSES, journey_a["id"]), b.subscribe(RESPONSES, journey_b["id"])
            a_nps, b_nps = a.subscribe(NPS, journey_a["id"]), b.subscribe(NPS, journey_b["id"])
            assert (await a_nps.next())["npsUpdated"]["n"] == 0
            assert (await b_nps.next())["npsUpdated"]["n"] == 0
            await stack.responses([_answer(survey_a, "a-customer", 10)])
            got = (await a_responses.next())["responseSubmitted"]
            assert (got["customerExternalId"], got["journeyKey"], got["nps"], got["npsCategory"]) == (
                "a-customer", "buy-a-bike", 10, "promoter")  # fmt: skip
            assert (await a_nps.next())["npsUpdated"]["n"] == 1
            await b_nps.nothing()
            # B's own response is the first thing B's subscriptions send: A's never reached them
            await other.responses([_answer(survey_b, "b-customer", 2)])
            assert (await b_responses.next())["responseSubmitted"]["customerExternalId"] == "b-customer"
            b_now = (await b_nps.next())["npsUpdated"]
            assert (b_now["n"], b_now["value"]) == (1, -100.0)
            await a_responses.nothing()

    async def test_responses_need_the_feedback_scope(self, processes: dict[str, str], stack: Stack, keys: Keys) -> None:
        journey, _ = await journey_with_survey(stack)
        reader = keys.headers(stack.workspace, ["journeys:read", "scores:read"])
        async with live_session(processes, reader) as session:
            with pytest.raises(TransportQueryError, match="feedback:read"):
                await session.subscribe(RESPONSES, journey["id"]).next()


PROTOCOL = [websockets.Subprotocol("graphql-transport-ws")]


async def _closed_with(url: str, payload: dict[str, Any], *, within: float = WAIT) -> tuple[list[str], Any]:
    """What a graphql-transport-ws connection initialised with `payload` received (message types), and
    the close frame it received."""
    received = []
    async with websockets.connect(url, subprotocols=PROTOCOL) as ws:
        await ws.send(orjson.dumps({"type": "connection_init", "payload": payload}).decode())

        async def receive() -> None:
            async with asyncio.timeout(within):
                while True:
                    received.append(orjson.loads(await ws.recv())["type"])

        with pytest.raises(websockets.ConnectionClosed) as closed:
            await receive()
    return received, closed.value.rcvd


class TestConnection:
    async def test_a_bad_token_closes_with_4403(self, processes: dict[str, str], keys: Keys) -> None:
        expired = keys.token(unique_name("gw"), SCOPES, ttl_seconds=-60)
        forged = expired.rsplit(".", 1)[0] + ".c2lnbmF0dXJl"
        for payload in ({}, {"Authorization": "Bearer"}, {"Authorization": f"Bearer {expired}"},
                        {"authorization": f"Bearer {forged}"}, {"Authorization": f"Basic {expired}"}):  # fmt: skip
            received, close = await _closed_with(_ws_url(processes), payload)
            assert (received, close.code) == ([], 4403), payload

    async def test_the_connection_closes_when_its_token_expires(self, processes: dict[str, str], keys: Keys) -> None:
        short = keys.token(unique_name("gw"), SCOPES, ttl_seconds=3)
        started = asyncio.get_running_loop().time()
        received, close = await _closed_with(_ws_url(processes), {"AUTHORIZATION": f"Bearer {short}"}, within=10)
        assert received == ["connection_ack"]  # accepted (`authorization` in any case), closed at the expiry
        assert (close.code, close.reason) == (4403, "The token has expired; connect again with a new one.")
        assert asyncio.get_running_loop().time() - started > 1.5

    async def test_the_legacy_graphql_ws_protocol_is_refused(self, processes: dict[str, str]) -> None:
        async with websockets.connect(_ws_url(processes), subprotocols=[websockets.Subprotocol("graphql-ws")]) as ws:
            assert ws.subprotocol is None
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), WAIT)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4406

    async def test_the_subscription_past_the_cap_gets_an_error(self, processes: dict[str, str], stack: Stack) -> None:
        journey, _ = await journey_with_survey(stack)
        subscribe = {"query": RESPONSES, "variables": {"id": journey["id"]}}
        cap = 20  # GATEWAY_MAX_SUBSCRIPTIONS_PER_CONNECTION's default

        async def send(message: dict[str, Any]) -> None:
            await ws.send(orjson.dumps(message).decode())

        async with websockets.connect(_ws_url(processes), subprotocols=PROTOCOL) as ws:
            await send({"type": "connection_init", "payload": stack.headers})
            assert orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))["type"] == "connection_ack"
            for n in range(1, cap + 2):
                await send({"id": str(n), "type": "subscribe", "payload": subscribe})
            message = orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))
            assert (message["type"], message["id"]) == ("error", str(cap + 1))
            assert message["payload"][0]["message"] == "Subscription limit reached"
            # once one of them is completed, another one is taken (no error comes)
            await send({"id": "1", "type": "complete"})
            await send({"id": "again", "type": "subscribe", "payload": subscribe})
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), QUIET)


class TestQueriesOnAConnection:
    async def test_each_query_reads_afresh(self, processes: dict[str, str], stack: Stack) -> None:
        """strawberry keeps one context per connection: a second query on it still sees a change made
        in between (its loaders are the operation's own; the response cache moves on with the event)."""
        journey, _ = await journey_with_survey(stack)
        query = GraphQLRequest("query($id: ID!) { journey(id: $id) { name } }", variable_values={"id": journey["id"]})
        async with live_session(processes, stack.headers) as live:
            assert (await live.session.execute(query))["journey"]["name"] == "buy-a-bike"
            renamed = await stack.journey.patch(
                f"/v1/journeys/{journey['id']}", json={"name": "Buy a bike, renamed"},
                headers=stack.headers,
            )  # fmt: skip
            assert renamed.status_code == 200, renamed.text
            deadline = asyncio.get_running_loop().time() + WAIT
            while (await live.session.execute(query))["journey"]["name"] != "Buy a bike, renamed":
                assert asyncio.get_running_loop().time() < deadline, "the rename never showed"
                await asyncio.sleep(0.2)
