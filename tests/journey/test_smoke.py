from tests.journey.factories import JourneyApi


class TestModelling:
    async def test_create_journey_gets_default_stages(self, api: JourneyApi) -> None:
        journey = await api.journey()
        stages = await api.stages(journey["id"])
        assert [s["name"] for s in stages] == ["Need", "Buy", "Use"]
        tp = await api.touchpoint()
        step = await api.step(journey["id"], stages[1]["id"], tp["id"], moment_of_truth=True)
        assert step["position"] == 0
        m = await api.get(f"/v1/journeys/{journey['id']}/map")
        assert m.status_code == 200, m.text
        print(m.json())
