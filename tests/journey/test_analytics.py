"""Funnel, paths, reach, DNA and timeline against a small hand-computed example.

Journey "bike": Need (ad) → Buy (shop, store) → Use (app). Hours after T0:
  A  ad 0, shop 1, app 2                       all stages; 1 h, 1 h
  B  app 5, shop 3, ad 1 (sent in this order)  out of order; all stages; 2 h, 2 h
  C  ad 0, ad 0.5, ad 1, store 2               repeated touches; need, buy (2 h)
  D  ad 0 (email), app 1                       skips Buy: need only in the funnel
  E  ad 0, shop 24, app 25                     window edge: shop at exactly 24 h counts; app at 25 h
                                               only with the window from the previous stage
  F  shop 0, ad 1                              buys before the need: need only
  G  app 10                                    never enters the funnel

Funnel, paths and all-time reach answer from projections built from the events in the background:
each test waits until they hold what it posted (`settled`) before it reads.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from tests.eventually import eventually
from tests.journey.activity_factories import at, bike_journey, bulk, put_customer, touch
from tests.journey.factories import JourneyApi
from tests.journey.projections import settled

EVENTS = [
    ("A", "ad", 0),
    ("A", "shop", 1),
    ("A", "app", 2),
    ("B", "app", 5),
    ("B", "shop", 3),
    ("B", "ad", 1),
    ("C", "ad", 0),
    ("C", "ad", 0.5),
    ("C", "ad", 1),
    ("C", "store", 2),
    ("D", "ad", 0),
    ("D", "app", 1),
    ("E", "ad", 0),
    ("E", "shop", 24),
    ("E", "app", 25),
    ("F", "shop", 0),
    ("F", "ad", 1),
    ("G", "app", 10),
]
FAMILY = {"name": "b2c", "when": {"attribute": "segment", "op": "eq", "value": "b2c"}}


@pytest.fixture
async def bike(api: JourneyApi, journey_app: FastAPI) -> dict[str, Any]:
    setup = await bike_journey(api)
    await api.persona("family", rules=[FAMILY])
    await put_customer(api, "A", profile={"segment": "b2c"})
    await put_customer(api, "B", profile={"segment": "b2c"})
    items = [touch(f"{c}-{tp}-{h}", c, tp, at(h), **({"channel": "email"} if c == "D" else {})) for c, tp, h in EVENTS]
    # two batches, the second replaying part of the first: replays must not count twice
    assert (await bulk(api, "interactions", items[:10]))["counts"]["created"] == 10
    mark = datetime.now(UTC)
    assert (await bulk(api, "interactions", items[5:]))["counts"] == {
        "created": 8,
        "updated": 0,
        "stored": 0,
        "duplicate": 5,
        "conflict": 0,
        "failed": 0,
    }
    await settled(journey_app, api.workspace, mark)
    return setup


def stage_counts(group: dict[str, Any]) -> list[int]:
    return [s["customers"] for s in group["stages"]]


class TestFunnel:
    async def test_window_from_first_stage(self, api: JourneyApi, bike: dict[str, Any]) -> None:
        r = await api.get(f"/v1/journeys/{bike['journey']['id']}/funnel", params={"window_hours": 24})
        assert r.status_code == 200, r.text
        [group] = r.json()["groups"]
        need, buy, use = group["stages"]
        assert [need["customers"], buy["customers"], use["customers"]] == [6, 4, 2]
        assert buy["conversion_from_previous"] == pytest.approx(4 / 6)
        assert use["conversion_from_previous"] == pytest.approx(2 / 4)
        assert use["conversion_overall"] == pytest.approx(2 / 6)
        assert (buy["drop_off"], use["drop_off"]) == (2, 2)
        assert buy["median_seconds_from_previous"] == 2 * 3600  # of 1, 2, 2, 24 h
        assert use["median_seconds_from_previous"] == 1.5 * 3600  # of 1, 2 h
        assert need["median_seconds_from_previous"] is None

    async def test_window_per_step(self, api: JourneyApi, bike: dict[str, Any]) -> None:
        r = await api.get(
            f"/v1/journeys/{bike['journey']['id']}/funnel",
            params={"window_hours": 24, "window_from": "previous_stage"},
        )
        [group] = r.json()["groups"]
        assert stage_counts(group) == [6, 4, 3]
        assert group["stages"][2]["median_seconds_from_previous"] == 3600  # of 1, 2, 1 h

    async def test_narrow_window_and_time_range(self, api: JourneyApi, bike: dict[str, Any]) -> None:
        url = f"/v1/journeys/{bike['journey']['id']}/funnel"
        [group] = (await api.get(url, params={"window_hours": 1})).json()["groups"]
        assert stage_counts(group) == [6, 1, 0]  # only A buys within 1 h of the ad; A's app is at 2 h
        [group] = (await api.get(url, params={"window_hours": 24, "until": at(23)})).json()["groups"]
        assert stage_counts(group) == [6, 3, 2]  # E's shop at 24 h is outside the range
        [group] = (await api.get(url, params={"since": at(0.75)})).json()["groups"]
        assert stage_counts(group) == [3, 2, 1]  # B, C (ad 1), F; C buys, B buys and uses

    async def test_breakdown_by_channel_and_persona(self, api: JourneyApi, bike: dict[str, Any]) -> None:
        url = f"/v1/journeys/{bike['journey']['id']}/funnel"
        groups = (await api.get(url, params={"window_hours": 24, "breakdown": "channel"})).json()["groups"]
        assert {g["group"]: stage_counts(g) for g in groups} == {"email": [1, 0, 0], "social": [5, 4, 2]}
        groups = (await api.get(url, params={"window_hours": 24, "breakdown": "persona"})).json()["groups"]
        assert {g["group"]: stage_counts(g) for g in groups} == {"family": [2, 2, 2], None: [4, 2, 0]}

    async def test_bad_range_is_422_and_unknown_journey_404(self, api: JourneyApi, bike: dict[str, Any]) -> None:
        url = f"/v1/journeys/{bike['journey']['id']}/funnel"
        assert (await api.get(url, params={"since": at(2), "until": at(1)})).status_code == 422
        missing = "/v1/journeys/00000000-0000-7000-8000-000000000000/funnel"
        assert (await api.get(missing)).status_code == 404


class TestPaths:
    async def test_stage_paths_with_repeats_collapsed(self, api: JourneyApi, bike: dict[str, Any]) -> None:
        r = await api.get(f"/v1/journeys/{bike['journey']['id']}/paths", params={"top": 2})
        assert r.status_code == 200, r.text
        body = r.json()
        assert [(p["nodes"], p["customers"]) for p in body["paths"]] == [
            (["need", "buy", "use"], 3),
            (["buy", "need"], 1),
        ]
        assert (body["customers"], body["other_customers"]) == (7, 3), body
        assert {(n["id"], n["customers"]) for n in body["nodes"]} == {
            ("0:need", 3),
            ("1:buy", 3),
            ("2:use", 3),
            ("0:buy", 1),
            ("1:need", 1),
        }
        assert {(lk["source"], lk["target"], lk["customers"]) for lk in body["links"]} == {
            ("0:need", "1:buy", 3),
            ("1:buy", "2:use", 3),
            ("0:buy", "1:need", 1),
        }

    async def test_collapse_modes_and_touchpoint_level(self, api: JourneyApi, bike: dict[str, Any]) -> None:
        url = f"/v1/journeys/{bike['journey']['id']}/paths"
        raw = (await api.get(url, params={"collapse": "none", "top": 100})).json()["paths"]
        assert (["need", "need", "need", "buy"], 1) in [(p["nodes"], p["customers"]) for p in raw]
        tps = (await api.get(url, params={"level": "touchpoints", "collapse": "revisits", "top": 100})).json()
        got = {tuple(p["nodes"]): p["customers"] for p in tps["paths"]}
        assert got == {
            ("ad", "shop", "app"): 3,
            ("ad", "store"): 1,
            ("ad", "app"): 1,
            ("shop", "ad"): 1,
            ("app",): 1,
        }
        short = (await api.get(url, params={"max_length": 1, "top": 100})).json()["paths"]
        assert {tuple(p["nodes"]): p["customers"] for p in short} == {("need",): 5, ("buy",): 1, ("use",): 1}


class TestReach:
    async def test_reach_per_step(self, api: JourneyApi, bike: dict[str, Any]) -> None:
        r = await api.get(f"/v1/journeys/{bike['journey']['id']}/reach")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["journey_customers"] == 7
        assert [(s["touchpoint"], s["customers"]) for s in body["steps"]] == [
            ("ad", 6),
            ("shop", 4),
            ("store", 1),
            ("app", 5),
        ]
        assert body["steps"][0]["reach"] == pytest.approx(6 / 7)

    async def test_reach_in_a_time_window(self, api: JourneyApi, bike: dict[str, Any]) -> None:
        r = await api.get(f"/v1/journeys/{bike['journey']['id']}/reach", params={"until": at(1.5)})
        body = r.json()
        assert body["journey_customers"] == 6
        assert [s["customers"] for s in body["steps"]] == [6, 2, 0, 1]
        assert body["steps"][1]["reach"] == pytest.approx(1 / 3)

    async def test_persona_members_count_without_events(self, api: JourneyApi, bike: dict[str, Any]) -> None:
        personas = (await api.get("/v1/personas")).json()["items"]
        patched = await api.patch(f"/v1/journeys/{bike['journey']['id']}", json={"persona_id": personas[0]["id"]})
        assert patched.status_code == 200, patched.text
        await put_customer(api, "H", profile={"segment": "b2c"})  # family, no events
        body = (await api.get(f"/v1/journeys/{bike['journey']['id']}/reach")).json()
        assert body["journey_customers"] == 8
        assert body["steps"][0]["reach"] == pytest.approx(6 / 8)
        # in a window: the 6 customers with events before 1.5 h (A and B among them) and H
        url = f"/v1/journeys/{bike['journey']['id']}/reach"
        body = (await api.get(url, params={"until": at(1.5)})).json()
        assert body["journey_customers"] == 7
        assert [s["customers"] for s in body["steps"]] == [6, 2, 0, 1]
        assert body["steps"][0]["reach"] == pytest.approx(6 / 7)


class TestDna:
    async def test_dna_of_a_customer_with_repeated_touches(self, api: JourneyApi, bike: dict[str, Any]) -> None:
        r = await api.get("/v1/customers/C/dna")
        assert r.status_code == 200, r.text
        dna = r.json()
        assert (dna["interactions"], dna["visits"], dna["visitor_type"]) == (4, 2, "returning_visitor")
        [journey] = dna["journeys"]
        assert journey["stage_reached"]["key"] == "buy"
        assert journey["member_by"] == ["interaction"]
        assert [(c["channel"], c["interactions"]) for c in journey["channels"]] == [("social", 3), ("store", 1)]
        assert [(t["touchpoint"], t["interactions"]) for t in journey["touchpoints"]] == [("ad", 3), ("store", 1)]
        assert journey["first_seen"].startswith("2026-01-01T00:00:00")

    async def test_visitor_types(self, api: JourneyApi, bike: dict[str, Any]) -> None:
        assert (await api.get("/v1/customers/G/dna")).json()["visitor_type"] == "first_time_visitor"
        await bulk(api, "outcomes", [{"event_id": "o1", "customer": "A", "name": "purchase", "occurred_at": at(3)}])
        dna = (await api.get("/v1/customers/A/dna")).json()
        assert dna["visitor_type"] == "existing_customer"
        assert dna["persona_key"] == "family"
        assert dna["outcomes"] == [{"name": "purchase", "count": 1, "value": None}]
        await put_customer(api, "G", existing_customer=True)
        assert (await api.get("/v1/customers/G/dna")).json()["visitor_type"] == "existing_customer"

    async def test_persona_journey_without_events(self, api: JourneyApi, bike: dict[str, Any]) -> None:
        family = (await api.get("/v1/personas")).json()["items"][0]
        await api.patch(f"/v1/journeys/{bike['journey']['id']}", json={"persona_id": family["id"]})
        await put_customer(api, "H", profile={"segment": "b2c"})
        [journey] = (await api.get("/v1/customers/H/dna")).json()["journeys"]
        assert (journey["journey"], journey["member_by"], journey["stage_reached"]) == ("bike", ["persona"], None)
        [journey] = (await api.get("/v1/customers/A/dna")).json()["journeys"]
        assert journey["member_by"] == ["interaction", "persona"]
        assert journey["stage_reached"]["key"] == "use"


class TestTimeline:
    async def test_newest_first_across_pages(self, api: JourneyApi, bike: dict[str, Any]) -> None:
        await bulk(api, "outcomes", [{"event_id": "o1", "customer": "C", "name": "purchase", "occurred_at": at(1.5)}])
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            response = await api.get("/v1/customers/C/timeline", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            seen += [i["event_id"] for i in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ["C-store-2", "o1", "C-ad-1", "C-ad-0.5", "C-ad-0"]

    async def test_bad_cursor_is_422(self, api: JourneyApi, bike: dict[str, Any]) -> None:
        assert (await api.get("/v1/customers/C/timeline", params={"cursor": "nonsense"})).status_code == 422


class TestAnalyticsIsolation:
    async def test_other_workspace_sees_nothing(self, api: JourneyApi, bike: dict[str, Any]) -> None:
        other = api.other()
        jid = bike["journey"]["id"]
        for path in ("funnel", "paths", "reach"):
            assert (await other.get(f"/v1/journeys/{jid}/{path}")).status_code == 404
        for path in ("dna", "timeline"):
            assert (await other.get(f"/v1/customers/A/{path}")).status_code == 404


class TestReachRollup:
    async def test_rollup_agrees_with_events(self, api: JourneyApi, bike: dict[str, Any], journey_app: FastAPI) -> None:
        """All-time reach reads the customer × touchpoint projection; a time range reads the events."""
        await api.journey("other")
        mark = datetime.now(UTC)
        await bulk(
            api,
            "interactions",
            [
                touch("G-store-tagged", "G", "store", at(11), journey="other"),  # another journey's: excluded
                touch("G-store-own", "H", "store", at(12), journey="bike"),
                touch("A-ad-0", "A", "ad", at(0)),  # replay: counted once
            ],
        )
        await settled(journey_app, api.workspace, mark)
        url = f"/v1/journeys/{bike['journey']['id']}/reach"
        rollup = (await api.get(url)).json()
        events = (await api.get(url, params={"since": "1900-01-01T00:00:00Z"})).json()
        assert rollup["as_of"] is not None
        assert rollup["as_of"] < events["as_of"]  # the read time
        assert rollup["steps"] == events["steps"]
        assert rollup["journey_customers"] == events["journey_customers"] == 8
        assert [s["customers"] for s in rollup["steps"]] == [6, 4, 2, 5]


async def rollup_and_events(api: JourneyApi, url: str, params: dict[str, Any]) -> tuple[Any, Any]:
    """The same view from the rollup and computed from the events."""
    rollup = await api.get(url, params=params)
    events = await api.get(url, params={**params, "source": "events"})
    assert rollup.status_code == events.status_code == 200, (rollup.text, events.text)
    r, e = rollup.json(), events.json()
    assert (r["source"], e["source"]) == ("projection", "events")
    for body in (r, e):
        body.pop("source")
        body.pop("as_of")
    return r, e


# Hours after T0 (module docstring): ranges cut through customers' events and through the
# window; both window modes, every breakdown (but channel with `since`, computed from the events).
RANGES: list[dict[str, Any]] = [
    {},
    {"window_hours": 24},
    {"window_hours": 1.5},
    {"since": at(0.75)},
    {"until": at(24)},
    {"since": at(0), "until": at(2), "window_hours": 24},
    {"since": at(1), "until": at(1.5)},
]
FUNNEL_PARAMS: list[dict[str, Any]] = [
    {"window_from": w, "breakdown": b, **r}
    for w in ("first_stage", "previous_stage")
    for b in ("none", "persona", "channel")
    for r in RANGES
    if not (b == "channel" and "since" in r)
]
PATH_PARAMS: list[dict[str, Any]] = [
    {"level": level, "collapse": collapse, "max_length": n, **r}
    for level in ("stages", "touchpoints")
    for collapse in ("none", "repeats", "revisits")
    for n in (2, 10)
    for r in ({}, {"since": at(0.75)}, {"until": at(2)}, {"since": at(1), "until": at(5)})
]


async def assert_rollup_agrees(api: JourneyApi, journey_id: str) -> None:
    for params in FUNNEL_PARAMS:
        r, e = await rollup_and_events(api, f"/v1/journeys/{journey_id}/funnel", params)
        assert r == e, params
    for params in PATH_PARAMS:
        r, e = await rollup_and_events(api, f"/v1/journeys/{journey_id}/paths", params)
        assert r == e, params


class TestFunnelAndPathsRollup:
    async def test_default_window_from_the_rollup_hand_computed(self, api: JourneyApi, bike: dict[str, Any]) -> None:
        """Default window (720 h): F buys before its need (stops at need); E uses at 25 h (counts)."""
        url = f"/v1/journeys/{bike['journey']['id']}/funnel"
        for body in await rollup_and_events(api, url, {}):
            [group] = body["groups"]
            assert stage_counts(group) == [6, 4, 3]
            assert group["stages"][1]["median_seconds_from_previous"] == 2 * 3600  # of 1, 2, 2, 24 h
            assert group["stages"][2]["median_seconds_from_previous"] == 3600  # of 1, 2, 1 h
        paths = (await api.get(f"/v1/journeys/{bike['journey']['id']}/paths")).json()
        assert paths["source"] == "projection"
        assert {tuple(p["nodes"]): p["customers"] for p in paths["paths"]} == {
            ("need", "buy", "use"): 3,  # A, B, E
            ("need", "buy"): 1,  # C
            ("need", "use"): 1,  # D
            ("buy", "need"): 1,  # F
            ("use",): 1,  # G
        }

    async def test_every_parameter_agrees_with_the_events(self, api: JourneyApi, bike: dict[str, Any]) -> None:
        await assert_rollup_agrees(api, bike["journey"]["id"])

    async def test_out_of_order_arrival_after_the_rollup_was_built(
        self, api: JourneyApi, bike: dict[str, Any], journey_app: FastAPI
    ) -> None:
        jid = bike["journey"]["id"]
        await assert_rollup_agrees(api, jid)
        # H arrives newest first, one event per batch; F's need moves before its purchase, which
        # changes F's funnel (not an addition to it); C's repeated ad is replayed.
        for item in [
            touch("H-app", "H", "app", at(30)),
            touch("H-shop", "H", "shop", at(29)),
            touch("H-ad", "H", "ad", at(28)),
            touch("F-ad-early", "F", "ad", at(-1)),
            touch("C-ad-0.5", "C", "ad", at(0.5)),
        ]:
            mark = datetime.now(UTC)
            if (await bulk(api, "interactions", [item]))["counts"]["created"]:  # a replay publishes nothing
                await settled(journey_app, api.workspace, mark)
            await assert_rollup_agrees(api, jid)
        [group] = (await api.get(f"/v1/journeys/{jid}/funnel")).json()["groups"]
        assert stage_counts(group) == [7, 6, 4]  # + H (all stages), + F (need at -1 h, shop at 0)

    async def test_model_change_rebuilds_the_rollup(
        self, api: JourneyApi, bike: dict[str, Any], journey_app: FastAPI
    ) -> None:
        jid = bike["journey"]["id"]
        await assert_rollup_agrees(api, jid)
        hotline = await api.touchpoint("hotline", "phone")
        await api.step(jid, bike["stages"][2]["id"], hotline["id"])  # a Use touchpoint G never met
        mark = datetime.now(UTC)
        await bulk(api, "interactions", [touch("G-hotline", "G", "hotline", at(11))])
        await settled(journey_app, api.workspace, mark)
        await assert_rollup_agrees(api, jid)
        # the stage order changes the funnel entirely: Use first
        stages = bike["stages"]
        mark = datetime.now(UTC)
        r = await api.patch(f"/v1/journeys/{jid}/stages/{stages[2]['id']}", json={"position": 0})
        assert r.status_code == 200, r.text
        await settled(journey_app, api.workspace, mark)
        await assert_rollup_agrees(api, jid)

    async def test_deleting_the_journey_removes_its_rollup(
        self, api: JourneyApi, bike: dict[str, Any], journey_app: FastAPI
    ) -> None:
        jid = bike["journey"]["id"]
        count = sa.text(
            "SELECT (SELECT count(*) FROM customer_journey WHERE journey_id = CAST(:j AS uuid)) "
            "+ (SELECT count(*) FROM journey_rollup WHERE journey_id = CAST(:j AS uuid))"
        )

        async def rows() -> int:
            async with journey_app.state.engine.begin() as conn:
                return int((await conn.execute(count, {"j": jid})).scalar_one())

        assert await rows() == 7 + 1  # A..G, and the journey's state
        assert (await api.delete(f"/v1/journeys/{jid}")).status_code == 204

        async def gone() -> bool:
            return await rows() == 0

        await eventually(gone)
