"""The journey model through the real API: personas, touchpoints, journeys, stages, steps, map."""

from __future__ import annotations

from typing import Any

from services.journey.models import JourneyMap, TouchpointPublic
from tests.journey.factories import JourneyApi


async def _map(api: JourneyApi, journey_id: str) -> dict[str, Any]:
    response = await api.get(f"/v1/journeys/{journey_id}/map")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


class TestJourneyMaps:
    async def test_many_maps_in_one_call_are_the_single_maps(self, api: JourneyApi) -> None:
        a, b = await api.journey("a"), await api.journey("b", stages=[{"key": "only", "name": "Only"}])
        unknown = "00000000-0000-7000-8000-000000000001"
        response = await api.get("/v1/journey-maps", params=[("id", b["id"]), ("id", unknown), ("id", a["id"])])
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["items"] == [await _map(api, b["id"]), await _map(api, a["id"])]
        assert body["not_found"] == [unknown]
        elsewhere = (await api.other().get("/v1/journey-maps", params={"id": a["id"]})).json()
        assert elsewhere == {"items": [], "not_found": [a["id"]]}
        assert (await api.get("/v1/journey-maps")).status_code == 422


class TestJourneys:
    async def test_create_journey_without_stages_gets_need_buy_use(self, api: JourneyApi) -> None:
        journey = await api.journey()
        stages = await api.stages(journey["id"])
        assert [(s["key"], s["name"], s["position"]) for s in stages] == [
            ("need", "Need", 0),
            ("buy", "Buy", 1),
            ("use", "Use", 2),
        ]
        assert journey["status"] == "draft"
        assert journey["state"] == "current"

    async def test_create_journey_with_own_stages_keeps_their_order(self, api: JourneyApi) -> None:
        stages = [{"key": "aware", "name": "Aware"}, {"key": "join", "name": "Join"}]
        journey = await api.journey(stages=stages)
        assert [s["key"] for s in await api.stages(journey["id"])] == ["aware", "join"]

    async def test_duplicate_stage_keys_are_refused(self, api: JourneyApi) -> None:
        body = {"key": "j", "name": "J", "stages": [{"key": "a", "name": "A"}, {"key": "a", "name": "B"}]}
        response = await api.post("/v1/journeys", json=body)
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "body.stages"

    async def test_target_journey_links_to_the_current_one(self, api: JourneyApi) -> None:
        current = await api.journey("today")
        target = await api.journey("tomorrow", state="target", improves_journey_id=current["id"])
        assert target["improves_journey_id"] == current["id"]
        # a current journey cannot improve another; the link must point at a current journey
        bad = await api.post("/v1/journeys", json={"key": "x", "name": "x", "improves_journey_id": current["id"]})
        assert bad.status_code == 422
        assert "target" in bad.json()["detail"]
        chained = await api.post(
            "/v1/journeys",
            json={"key": "y", "name": "y", "state": "target", "improves_journey_id": target["id"]},
        )
        assert chained.status_code == 422
        assert "'current' journey" in chained.json()["detail"]

    async def test_update_journey_changes_only_sent_fields(self, api: JourneyApi) -> None:
        persona = await api.persona()
        journey = await api.journey(owner="Lena")
        response = await api.patch(
            f"/v1/journeys/{journey['id']}", json={"status": "active", "persona_id": persona["id"]}
        )
        assert response.status_code == 200, response.text
        updated = response.json()
        assert (updated["status"], updated["owner"], updated["persona_id"]) == ("active", "Lena", persona["id"])
        assert updated["updated_at"] >= journey["updated_at"]

    async def test_list_journeys_filters_and_paginates(self, api: JourneyApi) -> None:
        persona = await api.persona()
        for i in range(5):
            await api.journey(f"j{i}", name=f"Journey {i}", persona_id=persona["id"] if i % 2 else None)
        await api.patch(
            f"/v1/journeys/{(await api.get('/v1/journeys', params={'key': 'j3'})).json()['items'][0]['id']}",
            json={"status": "active"},
        )
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await api.get("/v1/journeys", params=params)).json()
            seen += [j["key"] for j in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ["j0", "j1", "j2", "j3", "j4"]
        by_persona = (await api.get("/v1/journeys", params={"persona_id": persona["id"]})).json()["items"]
        assert [j["key"] for j in by_persona] == ["j1", "j3"]
        active = (await api.get("/v1/journeys", params={"status": "active"})).json()["items"]
        assert [j["key"] for j in active] == ["j3"]
        found = (await api.get("/v1/journeys", params={"q": "NEY 4"})).json()["items"]
        assert [j["key"] for j in found] == ["j4"]

    async def test_delete_journey_removes_its_map_but_keeps_touchpoints(self, api: JourneyApi) -> None:
        journey = await api.journey()
        stage = (await api.stages(journey["id"]))[0]
        tp = await api.touchpoint()
        await api.step(journey["id"], stage["id"], tp["id"])
        assert (await api.delete(f"/v1/journeys/{journey['id']}")).status_code == 204
        assert (await api.get(f"/v1/journeys/{journey['id']}/map")).status_code == 404
        assert (await api.get(f"/v1/touchpoints/{tp['id']}")).status_code == 200
        assert (await api.delete(f"/v1/touchpoints/{tp['id']}")).status_code == 204


class TestStages:
    async def test_add_stage_at_position_shifts_the_others(self, api: JourneyApi) -> None:
        journey = await api.journey()
        response = await api.post(
            f"/v1/journeys/{journey['id']}/stages", json={"key": "compare", "name": "Compare", "position": 1}
        )
        assert response.status_code == 201, response.text
        assert response.json()["position"] == 1
        assert [s["key"] for s in await api.stages(journey["id"])] == ["need", "compare", "buy", "use"]

    async def test_move_and_rename_stage(self, api: JourneyApi) -> None:
        journey = await api.journey()
        use = (await api.stages(journey["id"]))[2]
        response = await api.patch(
            f"/v1/journeys/{journey['id']}/stages/{use['id']}", json={"position": 0, "name": "Nutzen"}
        )
        assert response.status_code == 200, response.text
        assert [(s["key"], s["name"]) for s in await api.stages(journey["id"])] == [
            ("use", "Nutzen"),
            ("need", "Need"),
            ("buy", "Buy"),
        ]

    async def test_remove_stage_with_steps_is_a_conflict_naming_them(self, api: JourneyApi) -> None:
        journey = await api.journey()
        need, buy, _ = await api.stages(journey["id"])
        step = await api.step(journey["id"], buy["id"], (await api.touchpoint())["id"])
        blocked = await api.delete(f"/v1/journeys/{journey['id']}/stages/{buy['id']}")
        assert blocked.status_code == 409
        assert blocked.json()["steps"] == [step["id"]]
        assert (await api.delete(f"/v1/journeys/{journey['id']}/stages/{need['id']}")).status_code == 204
        assert [(s["key"], s["position"]) for s in await api.stages(journey["id"])] == [("buy", 0), ("use", 1)]

    async def test_duplicate_stage_key_is_a_conflict(self, api: JourneyApi) -> None:
        journey = await api.journey()
        response = await api.post(f"/v1/journeys/{journey['id']}/stages", json={"key": "buy", "name": "Again"})
        assert response.status_code == 409


class TestSteps:
    async def test_steps_keep_dense_positions_when_inserted_and_moved(self, api: JourneyApi) -> None:
        journey = await api.journey()
        need, buy, _ = await api.stages(journey["id"])
        a, b, c = [await api.touchpoint(k) for k in ("a", "b", "c")]
        s_a = await api.step(journey["id"], need["id"], a["id"])
        s_b = await api.step(journey["id"], need["id"], b["id"])
        s_c = await api.step(journey["id"], need["id"], c["id"], position=0)
        doc = await _map(api, journey["id"])
        assert [s["touchpoint"]["key"] for s in doc["stages"][0]["steps"]] == ["c", "a", "b"]
        moved = await api.patch(f"/v1/journeys/{journey['id']}/steps/{s_a['id']}", json={"stage_id": buy["id"]})
        assert moved.status_code == 200, moved.text
        assert (moved.json()["stage_id"], moved.json()["position"]) == (buy["id"], 0)
        doc = await _map(api, journey["id"])
        assert [(s["id"], s["position"]) for s in doc["stages"][0]["steps"]] == [(s_c["id"], 0), (s_b["id"], 1)]
        assert (await api.delete(f"/v1/journeys/{journey['id']}/steps/{s_c['id']}")).status_code == 204
        doc = await _map(api, journey["id"])
        assert [(s["id"], s["position"]) for s in doc["stages"][0]["steps"]] == [(s_b["id"], 0)]

    async def test_step_with_stage_of_another_journey_is_unprocessable(self, api: JourneyApi) -> None:
        one, other = await api.journey("one"), await api.journey("other")
        foreign_stage = (await api.stages(other["id"]))[0]
        tp = await api.touchpoint()
        response = await api.post(
            f"/v1/journeys/{one['id']}/steps", json={"stage_id": foreign_stage["id"], "touchpoint_id": tp["id"]}
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "body.stage_id"

    async def test_step_with_touchpoint_of_another_workspace_is_unprocessable(self, api: JourneyApi) -> None:
        journey = await api.journey()
        stage = (await api.stages(journey["id"]))[0]
        foreign_tp = await api.other().touchpoint()
        response = await api.post(
            f"/v1/journeys/{journey['id']}/steps", json={"stage_id": stage["id"], "touchpoint_id": foreign_tp["id"]}
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "body.touchpoint_id"

    async def test_same_touchpoint_twice_in_a_stage_is_a_conflict(self, api: JourneyApi) -> None:
        journey = await api.journey()
        stage = (await api.stages(journey["id"]))[0]
        tp = await api.touchpoint()
        await api.step(journey["id"], stage["id"], tp["id"])
        again = await api.post(
            f"/v1/journeys/{journey['id']}/steps", json={"stage_id": stage["id"], "touchpoint_id": tp["id"]}
        )
        assert again.status_code == 409

    async def test_emotion_out_of_range_is_a_field_error(self, api: JourneyApi) -> None:
        journey = await api.journey()
        stage = (await api.stages(journey["id"]))[0]
        tp = await api.touchpoint()
        response = await api.post(
            f"/v1/journeys/{journey['id']}/steps",
            json={"stage_id": stage["id"], "touchpoint_id": tp["id"], "expected_emotion": 3},
        )
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["field"] == "body.expected_emotion"

    async def test_one_touchpoint_serves_many_journeys(self, api: JourneyApi) -> None:
        tp = await api.touchpoint()
        for key in ("first", "second"):
            journey = await api.journey(key)
            await api.step(journey["id"], (await api.stages(journey["id"]))[1]["id"], tp["id"])
        steps = (await api.get("/v1/steps", params={"touchpoint_id": tp["id"]})).json()["items"]
        assert len({s["journey_id"] for s in steps}) == 2


class TestTouchpoints:
    async def test_delete_touchpoint_in_steps_is_a_conflict_naming_them(self, api: JourneyApi) -> None:
        tp = await api.touchpoint("hotline", "phone")
        journey = await api.journey()
        buy = (await api.stages(journey["id"]))[1]
        step = await api.step(journey["id"], buy["id"], tp["id"])
        response = await api.delete(f"/v1/touchpoints/{tp['id']}")
        assert response.status_code == 409
        body = response.json()
        assert body["steps"] == [{"step_id": step["id"], "journey": "buy-a-bike", "stage": "buy"}]
        assert "buy-a-bike/buy" in body["detail"]

    async def test_duplicate_key_is_a_conflict(self, api: JourneyApi) -> None:
        await api.touchpoint("shop")
        response = await api.post("/v1/touchpoints", json={"key": "shop", "name": "Shop", "channel": "store"})
        assert response.status_code == 409
        assert "'shop'" in response.json()["detail"]

    async def test_renaming_to_a_taken_key_is_a_conflict(self, api: JourneyApi) -> None:
        await api.touchpoint("shop")
        other = await api.touchpoint("app", "app")
        response = await api.patch(f"/v1/touchpoints/{other['id']}", json={"key": "shop"})
        assert response.status_code == 409

    async def test_filters_by_channel_department_and_ids(self, api: JourneyApi) -> None:
        web = await api.touchpoint("web", "web", department="Digital")
        await api.touchpoint("phone", "phone", department="Service")
        chat = await api.touchpoint("chat", "chat", department="Service")
        by_channel = (await api.get("/v1/touchpoints", params={"channel": "phone"})).json()["items"]
        assert [t["key"] for t in by_channel] == ["phone"]
        by_dept = (await api.get("/v1/touchpoints", params={"department": "Service"})).json()["items"]
        assert [t["key"] for t in by_dept] == ["phone", "chat"]
        by_ids = (await api.get("/v1/touchpoints", params=[("id", web["id"]), ("id", chat["id"])])).json()["items"]
        assert [t["key"] for t in by_ids] == ["web", "chat"]

    async def test_cost_is_a_decimal_string_with_currency(self, api: JourneyApi) -> None:
        tp = await api.touchpoint(yearly_cost="120000.50", currency="CHF")
        assert (tp["yearly_cost"], tp["currency"]) == ("120000.50", "CHF")
        bad = await api.post("/v1/touchpoints", json={"key": "x", "name": "x", "channel": "fax"})
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == "body.channel"


class TestPersonas:
    async def test_rules_are_validated_and_round_trip(self, api: JourneyApi) -> None:
        rules = [
            {
                "name": "young urban",
                "when": {
                    "all": [
                        {"attribute": "age", "op": "lt", "value": 30},
                        {"not": {"attribute": "address.city", "op": "in", "value": ["Dorf"]}},
                    ]
                },
            }
        ]
        persona = await api.persona(rules=rules, needs=["speed"])
        got = (await api.get(f"/v1/personas/{persona['id']}")).json()
        assert got["rules"][0]["when"]["all"][1]["not"]["attribute"] == "address.city"
        bad = await api.post(
            "/v1/personas",
            json={
                "key": "b",
                "name": "B",
                "rules": [{"name": "r", "when": {"attribute": "a", "op": "in", "value": 1}}],
            },
        )
        assert bad.status_code == 422
        assert "needs a list value" in bad.json()["detail"]

    async def test_persona_used_by_a_journey_cannot_be_deleted(self, api: JourneyApi) -> None:
        persona = await api.persona()
        await api.journey(persona_id=persona["id"])
        response = await api.delete(f"/v1/personas/{persona['id']}")
        assert response.status_code == 409
        assert response.json()["journeys"] == ["buy-a-bike"]

    async def test_journey_with_unknown_persona_is_unprocessable(self, api: JourneyApi) -> None:
        foreign = await api.other().persona()
        response = await api.post("/v1/journeys", json={"key": "k", "name": "n", "persona_id": foreign["id"]})
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "body.persona_id"


class TestMap:
    async def test_map_is_the_whole_journey_in_one_document(self, api: JourneyApi) -> None:
        persona = await api.persona()
        journey = await api.journey(persona_id=persona["id"])
        need, buy, use = await api.stages(journey["id"])
        portal = await api.touchpoint("portal", "partner", yearly_cost="1000.00", department="Sales")
        shop = await api.touchpoint("shop", "web")
        await api.step(journey["id"], need["id"], portal["id"], moment_of_truth=True, expected_emotion=2)
        await api.step(journey["id"], buy["id"], shop["id"], expected_emotion=-1)
        await api.step(journey["id"], use["id"], portal["id"])
        doc = await _map(api, journey["id"])
        parsed = JourneyMap.model_validate(doc)  # the SQL-built JSON honours the documented shape
        assert parsed.journey.id.hex == journey["id"].replace("-", "")
        assert parsed.persona is not None
        assert parsed.persona.key == persona["key"]
        assert [len(s.steps) for s in parsed.stages] == [1, 1, 1]
        first = parsed.stages[0].steps[0]
        assert (first.moment_of_truth, first.expected_emotion) == (True, 2)
        same = TouchpointPublic.model_validate((await api.get(f"/v1/touchpoints/{portal['id']}")).json())
        assert first.touchpoint == same

    async def test_map_of_empty_journey_has_empty_stages(self, api: JourneyApi) -> None:
        journey = await api.journey()
        doc = await _map(api, journey["id"])
        assert doc["persona"] is None
        assert [s["steps"] for s in doc["stages"]] == [[], [], []]

    async def test_every_kind_of_change_shows_in_the_next_map(self, api: JourneyApi) -> None:
        """Built by one statement per request: nothing cached, nothing stale."""
        persona = await api.persona()
        journey = await api.journey(persona_id=persona["id"])
        jid = journey["id"]
        need, buy, _ = await api.stages(jid)
        tp = await api.touchpoint("shop")
        other = await api.touchpoint("hotline", "phone")

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


class TestOpenApiExamples:
    def test_every_documented_example_is_a_valid_request(self) -> None:
        import pydantic

        from services.journey import models

        checked = 0
        for name in dir(models):
            model = getattr(models, name)
            if (
                isinstance(model, type)
                and issubclass(model, pydantic.BaseModel)
                and model.__module__.startswith("services.journey.models")
            ):
                extra = model.model_config.get("json_schema_extra")
                examples = extra.get("examples") if isinstance(extra, dict) else None
                for example in examples if isinstance(examples, list) else []:
                    model.model_validate(example)
                    checked += 1
        assert checked >= 4
