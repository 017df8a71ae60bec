"""Workspace B never sees, changes or deletes anything of workspace A, and lists never mix."""

from __future__ import annotations

import pytest

from tests.journey.factories import JourneyApi


@pytest.fixture
async def a_world(api: JourneyApi) -> dict[str, str]:
    persona = await api.persona()
    tp = await api.touchpoint()
    journey = await api.journey(persona_id=persona["id"])
    stage = (await api.stages(journey["id"]))[0]
    step = await api.step(journey["id"], stage["id"], tp["id"])
    return {"persona": persona["id"], "touchpoint": tp["id"], "journey": journey["id"], "stage": stage["id"],
            "step": step["id"]}  # fmt: skip


class TestTenantIsolation:
    async def test_other_workspace_gets_404_on_every_object(self, api: JourneyApi, a_world: dict[str, str]) -> None:
        b = api.other()
        j, st, sp = a_world["journey"], a_world["stage"], a_world["step"]
        reads = [
            f"/v1/personas/{a_world['persona']}",
            f"/v1/touchpoints/{a_world['touchpoint']}",
            f"/v1/journeys/{j}",
            f"/v1/journeys/{j}/map",
            f"/v1/journeys/{j}/stages",
        ]
        for url in reads:
            response = await b.get(url)
            assert response.status_code == 404, url
            assert "this workspace" in response.json()["detail"]
        writes = [
            ("PATCH", f"/v1/personas/{a_world['persona']}", {"name": "hijack"}),
            ("PATCH", f"/v1/touchpoints/{a_world['touchpoint']}", {"name": "hijack"}),
            ("PATCH", f"/v1/journeys/{j}", {"name": "hijack"}),
            ("POST", f"/v1/journeys/{j}/stages", {"key": "x", "name": "x"}),
            ("PATCH", f"/v1/journeys/{j}/stages/{st}", {"name": "hijack"}),
            ("POST", f"/v1/journeys/{j}/steps", {"stage_id": st, "touchpoint_id": a_world["touchpoint"]}),
            ("PATCH", f"/v1/journeys/{j}/steps/{sp}", {"moment_of_truth": True}),
            ("DELETE", f"/v1/journeys/{j}/steps/{sp}", None),
            ("DELETE", f"/v1/journeys/{j}/stages/{st}", None),
            ("DELETE", f"/v1/journeys/{j}", None),
            ("DELETE", f"/v1/touchpoints/{a_world['touchpoint']}", None),
            ("DELETE", f"/v1/personas/{a_world['persona']}", None),
        ]
        for method, url, body in writes:
            response = await b.request(method, url, json=body)
            assert response.status_code == 404, (method, url, response.text)
        # and A's objects are untouched
        doc = (await api.get(f"/v1/journeys/{j}/map")).json()
        assert doc["journey"]["name"] == "buy-a-bike"
        assert doc["stages"][0]["steps"][0]["id"] == sp

    async def test_lists_never_mix_workspaces(self, api: JourneyApi, a_world: dict[str, str]) -> None:
        b = api.other()
        await b.persona()
        await b.touchpoint()
        await b.journey()
        for url in ("/v1/personas", "/v1/touchpoints", "/v1/journeys", "/v1/steps"):
            a_ids = {i["id"] for i in (await api.get(url)).json()["items"]}
            b_ids = {i["id"] for i in (await b.get(url)).json()["items"]}
            assert a_ids, url
            assert not (a_ids & b_ids), url
        # filtering by A's ids from B finds nothing
        leaked = await b.get("/v1/touchpoints", params={"id": a_world["touchpoint"]})
        assert leaked.json()["items"] == []
        assert (await b.get("/v1/steps", params={"journey_id": a_world["journey"]})).json()["items"] == []

    async def test_same_keys_live_side_by_side_in_two_workspaces(self, api: JourneyApi) -> None:
        b = api.other()
        first, second = await api.touchpoint("shop"), await b.touchpoint("shop")
        assert first["id"] != second["id"]
