"""The journey projections (funnel/paths rows, customer × touchpoint pairs, their state) are built from
the service's events by the journey-analytics consumer and rebuilt in the background when a journey's
structure changes; a request never writes them, and a replay of the stream rebuilds them as they were.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import nats
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from uuid_utils.compat import uuid7

from services.common.events import Event
from services.journey.store.analytics.rollup import CONSUMER
from tests.conftest import Keys, Servers
from tests.eventually import eventually
from tests.journey.activity_factories import at, bike_journey, bulk, touch
from tests.journey.factories import JourneyApi
from tests.journey.projections import quiet, row_versions, settled, snapshot

TOUCHPOINTS = ["ad", "shop", "store", "app"]


def journey_items(n_customers: int, *, seed: int, prefix: str = "e") -> list[dict[str, Any]]:
    """A few events per customer at the bike journey's touchpoints, shuffled: arrival order is not
    time order; some are tagged with a journey."""
    rng = random.Random(seed)
    items = []
    for c in range(n_customers):
        for n in range(rng.randrange(1, 7)):
            tag = rng.choice([{}, {}, {}, {"journey": "bike"}, {"journey": "other"}])
            items.append(touch(f"{prefix}-{c}-{n}", f"c{c}", rng.choice(TOUCHPOINTS), at(rng.uniform(0, 48)), **tag))
    rng.shuffle(items)
    return items


async def rollup_row(app: FastAPI, journey_id: str) -> dict[str, Any]:
    async with app.state.engine.connect() as conn:
        row = (
            await conn.execute(
                sa.text("SELECT * FROM journey_rollup WHERE journey_id = CAST(:j AS uuid)"), {"j": journey_id}
            )
        ).one()
    return dict(row._mapping)


@pytest.fixture
async def bike(api: JourneyApi, journey_app: FastAPI) -> dict[str, Any]:
    """The bike journey (Need: ad; Buy: shop, store; Use: app) with 30 customers' events, projected."""
    setup = await bike_journey(api)
    await api.journey("other")
    mark = datetime.now(UTC)
    await bulk(api, "interactions", journey_items(30, seed=1))
    await settled(journey_app, api.workspace, mark)
    return setup


@contextlib.asynccontextmanager
async def rebuilds_held_back(app: FastAPI) -> AsyncIterator[None]:
    """The background rebuild stopped (the consumer runs on), started again on leaving."""
    builder = app.state.rollup_builder
    await builder.stop()
    try:
        yield
    finally:
        builder.start()


def without_as_of(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "as_of"}


def as_of(body: dict[str, Any]) -> datetime | None:
    return None if body["as_of"] is None else datetime.fromisoformat(body["as_of"])


class TestReplay:
    async def test_a_replay_of_the_stream_rebuilds_the_live_projections(
        self, api: JourneyApi, journey_app: FastAPI, servers: Servers
    ) -> None:
        setup = await bike_journey(api)
        other = await api.journey("other")
        other_stages = await api.stages(other["id"])
        tps = setup["touchpoints"]
        await api.step(other["id"], other_stages[0]["id"], tps["shop"]["id"])
        await api.step(other["id"], other_stages[1]["id"], tps["app"]["id"])
        first = journey_items(40, seed=2)
        # a retried bulk with the same Idempotency-Key: the original result, nothing stored twice
        for _ in range(2):
            response = await api.post("/v1/interactions/bulk", json={"items": first}, headers={"Idempotency-Key": "k1"})
            assert response.status_code == 200, response.text
        # the same event ids again (some repeated within the call, some with other content), new ones
        again = [*first[:20], *first[:5], {**first[7], "occurred_at": at(-5)}, *journey_items(10, seed=3, prefix="f")]
        result = await bulk(api, "interactions", again)
        assert result["counts"]["duplicate"] == 26
        # a structural change half way (rebuilt in the background), then more events
        hotline = await api.touchpoint("hotline", "phone")
        await api.step(setup["journey"]["id"], setup["stages"][2]["id"], hotline["id"])
        await api.patch(f"/v1/journeys/{other['id']}/stages/{other_stages[1]['id']}", json={"position": 0})
        late = [touch(f"h{c}", f"c{c}", "hotline", at(-c)) for c in range(0, 40, 3)]
        mark = datetime.now(UTC)
        await bulk(api, "interactions", [*late, *journey_items(5, seed=4, prefix="g")])
        await settled(journey_app, api.workspace, mark)
        live = await snapshot(journey_app, api.workspace)
        assert len(live["customer_journey"]) > 40
        assert len(live["customer_touchpoint"]) > 60
        assert len(live["journey_rollup"]) == 2

        nc = await nats.connect(servers.nats_url)
        try:
            await journey_app.state.runners[CONSUMER].replay(nc)
        finally:
            await nc.close()
        await settled(journey_app, api.workspace, mark, within=120)
        assert await snapshot(journey_app, api.workspace) == live


class TestVersions:
    async def test_an_event_not_above_the_version_held_changes_nothing(
        self, api: JourneyApi, journey_app: FastAPI, bike: dict[str, Any]
    ) -> None:
        journey_id = bike["journey"]["id"]
        runner = journey_app.state.runners[CONSUMER]
        held = await rollup_row(journey_app, journey_id)
        assert held["version"] == 5  # created, then four steps added
        rows = await snapshot(journey_app, api.workspace)

        def event(type: str, version: int, data: dict[str, Any]) -> Event[dict[str, Any]]:
            return Event[dict[str, Any]](
                id=uuid7(), type=type, workspace_id=api.workspace, occurred_at=datetime.now(UTC),
                aggregate_id=journey_id, version=version, data=data,
            )  # fmt: skip

        # A deletion at the version held (a redelivery, or overtaken): the projection stays.
        assert await runner.apply_now([event("journey.journey.deleted", 5, {"id": journey_id, "key": "bike"})]) == 1
        assert await rollup_row(journey_app, journey_id) == held
        assert await snapshot(journey_app, api.workspace) == rows
        # Rows built for another structure than the journey's: an older structural event is still
        # dropped (the journey stays current), a newer one marks it stale.
        async with journey_app.state.engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE journey_rollup SET signature = 'other' WHERE journey_id = CAST(:j AS uuid)"),
                {"j": journey_id},
            )
        step = {"id": str(uuid7()), "journey_id": journey_id}
        await runner.apply_now([event("journey.step.added", 4, step)])
        assert (await rollup_row(journey_app, journey_id))["stale_since"] is None
        await runner.apply_now([event("journey.step.added", 6, step)])
        state = await rollup_row(journey_app, journey_id)
        assert (state["version"], state["stale_since"] is not None) == (6, True)


class TestReadsWriteNothing:
    async def test_the_first_funnel_after_a_bulk_load_answers_at_once_from_what_is_there(
        self, api: JourneyApi, journey_app: FastAPI
    ) -> None:
        setup = await bike_journey(api)
        await api.journey("other")
        journey_id = setup["journey"]["id"]
        await bulk(api, "interactions", [touch("warm-up", "w", "ad", at(0))])
        mark = datetime.now(UTC)
        await bulk(api, "interactions", [touch("warm-up-2", "w", "app", at(1))])
        await settled(journey_app, api.workspace, mark)
        url = f"/v1/journeys/{journey_id}"
        # Hold the journey's lock as a slow consumer batch would: the events of the load cannot be
        # applied meanwhile, so a read can only answer from what was there before it.
        async with journey_app.state.engine.connect() as holder:
            await holder.execute(
                sa.text("SELECT 1 FROM journey_rollup WHERE journey_id = CAST(:j AS uuid) FOR UPDATE"),
                {"j": journey_id},
            )
            posted = datetime.now(UTC)
            assert (await bulk(api, "interactions", journey_items(300, seed=5)))["counts"]["failed"] == 0
            funnel = (await api.get(f"{url}/funnel")).json()
            assert [s["customers"] for s in funnel["groups"][0]["stages"]] == [1, 0, 0]  # only "w"
            assert as_of(funnel) < posted  # type: ignore[operator]
            assert (await api.get(f"{url}/paths")).json()["customers"] == 1
            assert (await api.get(f"{url}/reach")).json()["journey_customers"] == 1
            await holder.rollback()

        async def loaded() -> dict[str, Any] | None:
            body = (await api.get(f"{url}/funnel")).json()
            return body if as_of(body) >= posted else None  # type: ignore[operator]

        projected = await eventually(loaded)
        computed = (await api.get(f"{url}/funnel", params={"source": "events"})).json()
        assert projected["groups"] == computed["groups"]
        assert projected["groups"][0]["stages"][0]["customers"] > 100

    async def test_funnel_paths_and_reach_with_a_read_token_write_no_row(
        self, api: JourneyApi, journey_app: FastAPI, bike: dict[str, Any], keys: Keys
    ) -> None:
        await quiet(journey_app)
        reader = keys.headers(api.workspace, ["journeys:read"])
        journey = f"/v1/journeys/{bike['journey']['id']}"
        reads: list[tuple[str, dict[str, Any]]] = [
            (f"{journey}/funnel", {}),
            (f"{journey}/funnel", {"since": at(1), "window_hours": 2, "breakdown": "persona"}),
            (f"{journey}/funnel", {"since": at(1), "breakdown": "channel"}),
            (f"{journey}/funnel", {"source": "events"}),
            (f"{journey}/paths", {}),
            (f"{journey}/paths", {"until": at(10), "level": "touchpoints"}),
            (f"{journey}/paths", {"source": "events"}),
            (f"{journey}/reach", {}),
            (f"{journey}/reach", {"since": at(2)}),
            (f"{journey}/map", {}),
        ]
        before = await row_versions(journey_app)
        for url, params in reads:
            response = await api.http.get(url, params=params, headers=reader)
            assert response.status_code == 200, (url, response.text)
        assert await row_versions(journey_app) == before

    async def test_a_journey_never_built_answers_empty_with_no_as_of(
        self, api: JourneyApi, journey_app: FastAPI
    ) -> None:
        async with rebuilds_held_back(journey_app):
            setup = await bike_journey(api)
            url = f"/v1/journeys/{setup['journey']['id']}"
            mark = datetime.now(UTC)
            await bulk(api, "interactions", [touch("e1", "c1", "ad", at(0)), touch("e2", "c1", "shop", at(1))])

            async def applied() -> bool:
                async with journey_app.state.engine.connect() as conn:
                    as_of = await conn.scalar(
                        sa.text("SELECT as_of FROM projection_state WHERE consumer = :c AND workspace_id = :w"),
                        {"c": CONSUMER, "w": api.workspace},
                    )
                return as_of is not None and as_of >= mark

            await eventually(applied)
            funnel = (await api.get(f"{url}/funnel")).json()
            assert (funnel["as_of"], [s["customers"] for s in funnel["groups"][0]["stages"]]) == (None, [0, 0, 0])
            paths = (await api.get(f"{url}/paths")).json()
            assert (paths["as_of"], paths["customers"]) == (None, 0)
            assert (await api.get(f"{url}/reach")).json()["journey_customers"] == 1  # the pairs need no build


class TestStructuralChanges:
    async def test_a_rename_or_a_cost_change_rebuilds_nothing(
        self, api: JourneyApi, journey_app: FastAPI, bike: dict[str, Any]
    ) -> None:
        journey_id, stage = bike["journey"]["id"], bike["stages"][1]
        shop = bike["touchpoints"]["shop"]
        built = await rollup_row(journey_app, journey_id)
        await api.patch(f"/v1/journeys/{journey_id}", json={"name": "Bike, renamed"})
        await api.patch(f"/v1/journeys/{journey_id}/stages/{stage['id']}", json={"name": "Kaufen"})
        await api.patch(f"/v1/touchpoints/{shop['id']}", json={"name": "Web shop"})
        mark = datetime.now(UTC)
        await api.patch(f"/v1/touchpoints/{shop['id']}", json={"yearly_cost": "99000.00"})
        await settled(journey_app, api.workspace, mark)
        state = await rollup_row(journey_app, journey_id)
        assert state["version"] == built["version"] + 2  # the journey's and its stage's events were applied
        assert {k: v for k, v in state.items() if k != "version"} == {k: v for k, v in built.items() if k != "version"}
        funnel = (await api.get(f"/v1/journeys/{journey_id}/funnel")).json()
        assert [s["stage"]["name"] for s in funnel["groups"][0]["stages"]] == ["Need", "Kaufen", "Use"]

    @pytest.mark.parametrize("change", ["step added", "step removed", "stage moved", "touchpoint key changed"])
    async def test_a_structural_change_is_rebuilt_while_reads_answer_from_the_previous_rows(
        self, api: JourneyApi, journey_app: FastAPI, bike: dict[str, Any], change: str
    ) -> None:
        journey_id, stages, tps = bike["journey"]["id"], bike["stages"], bike["touchpoints"]
        url = f"/v1/journeys/{journey_id}"
        reads: list[tuple[str, dict[str, Any]]] = [
            ("funnel", {}),
            ("paths", {"level": "touchpoints", "top": 100}),
            ("paths", {"since": at(2)}),
        ]
        before = [(await api.get(f"{url}/{view}", params=params)).json() for view, params in reads]
        async with rebuilds_held_back(journey_app):
            mark = datetime.now(UTC)
            await make(api, change, journey_id, stages, tps)

            async def stale() -> bool:
                return (await rollup_row(journey_app, journey_id))["stale_since"] is not None

            await eventually(stale)
            during = [(await api.get(f"{url}/{view}", params=params)).json() for view, params in reads]
            assert [without_as_of(b) for b in during] == [without_as_of(b) for b in before]
            since = (await rollup_row(journey_app, journey_id))["stale_since"]
            assert all(as_of(d) <= since for d in during)
        await settled(journey_app, api.workspace, mark)
        after = [(await api.get(f"{url}/{view}", params=params)).json() for view, params in reads]
        computed = [(await api.get(f"{url}/{view}", params={**p, "source": "events"})).json() for view, p in reads]
        assert [without_as_of(a) | {"source": "-"} for a in after] == [
            without_as_of(c) | {"source": "-"} for c in computed
        ]
        assert after != before


async def make(
    api: JourneyApi, change: str, journey_id: str, stages: list[dict[str, Any]], tps: dict[str, Any]
) -> None:
    url = f"/v1/journeys/{journey_id}"
    if change == "step added":
        response = await api.post(f"{url}/steps", json={"stage_id": stages[0]["id"], "touchpoint_id": tps["app"]["id"]})
    elif change == "step removed":
        steps = (await api.get("/v1/steps", params={"journey_id": journey_id})).json()["items"]
        store = next(s for s in steps if s["touchpoint_id"] == tps["store"]["id"])
        response = await api.delete(f"{url}/steps/{store['id']}")
    elif change == "stage moved":
        response = await api.patch(f"{url}/stages/{stages[2]['id']}", json={"position": 0})
    else:
        response = await api.patch(f"/v1/touchpoints/{tps['shop']['id']}", json={"key": "web-shop"})
    assert response.status_code in (200, 201, 204), response.text
