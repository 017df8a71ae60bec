"""The cached map is served only while current: every change that shows in the map is visible at once."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI

from tests.journey.factories import JourneyApi


async def _map(api: JourneyApi, journey_id: str) -> dict[str, Any]:
    response = await api.get(f"/v1/journeys/{journey_id}/map")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


class TestMapCache:
    async def test_every_kind_of_change_shows_in_the_next_map(self, api: JourneyApi) -> None:
        persona = await api.persona()
        journey = await api.journey(persona_id=persona["id"])
        jid = journey["id"]
        need, buy, _ = await api.stages(jid)
        tp = await api.touchpoint("shop")
        other = await api.touchpoint("hotline", "phone")
        await _map(api, jid)  # cached from here on

        await api.patch(f"/v1/journeys/{jid}", json={"name": "Renamed"})
        assert (await _map(api, jid))["journey"]["name"] == "Renamed"
        await api.patch(f"/v1/personas/{persona['id']}", json={"name": "New persona name"})
        assert (await _map(api, jid))["persona"]["name"] == "New persona name"
        await api.patch(f"/v1/journeys/{jid}/stages/{need['id']}", json={"name": "Bedarf"})
        assert (await _map(api, jid))["stages"][0]["name"] == "Bedarf"
        step = await api.step(jid, buy["id"], tp["id"])
        assert [s["id"] for s in (await _map(api, jid))["stages"][1]["steps"]] == [step["id"]]
        await api.patch(f"/v1/touchpoints/{tp['id']}", json={"name": "Web shop"})
        assert (await _map(api, jid))["stages"][1]["steps"][0]["touchpoint"]["name"] == "Web shop"
        second = await api.step(jid, buy["id"], other["id"], position=0)
        assert [s["id"] for s in (await _map(api, jid))["stages"][1]["steps"]] == [second["id"], step["id"]]
        await api.patch(f"/v1/journeys/{jid}/steps/{step['id']}", json={"stage_id": need["id"]})
        doc = await _map(api, jid)
        assert [s["id"] for s in doc["stages"][0]["steps"]] == [step["id"]]
        assert [s["position"] for s in doc["stages"][1]["steps"]] == [0]
        await api.delete(f"/v1/journeys/{jid}/steps/{second['id']}")
        assert (await _map(api, jid))["stages"][1]["steps"] == []
        await api.post(f"/v1/journeys/{jid}/stages", json={"key": "loyal", "name": "Loyal", "position": 0})
        assert (await _map(api, jid))["stages"][0]["key"] == "loyal"

    async def test_a_current_map_is_served_from_the_cache(self, api: JourneyApi, journey_app: FastAPI) -> None:
        journey = await api.journey()
        first = await _map(api, journey["id"])
        async with journey_app.state.engine.begin() as conn:
            # Prove the second read comes from the cache: mark the cached document.
            await conn.execute(
                sa.text("UPDATE journey_map_cache SET doc = replace(doc, '\"buy-a-bike\"', '\"from-cache\"') "
                        "WHERE journey_id = :j"),
                {"j": journey["id"]},
            )  # fmt: skip
        assert (await _map(api, journey["id"]))["journey"]["key"] == "from-cache"
        await api.patch(f"/v1/journeys/{journey['id']}", json={"owner": "Lena"})
        fresh = await _map(api, journey["id"])
        assert (fresh["journey"]["key"], fresh["journey"]["owner"]) == (first["journey"]["key"], "Lena")
