"""Build a journey through the journey and feedback services' real APIs, and read its scores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.conftest import Keys
from tests.eventually import eventually

SCOPES = ["journeys:read", "journeys:write", "feedback:read", "feedback:write", "scores:read", "admin"]

SURVEY_QUESTIONS = [
    {"key": "recommend", "type": "nps", "text": {"en": "Would you recommend us?"}},
    {"key": "satisfied", "type": "rating", "text": {"en": "How satisfied were you here?"}},
    {"key": "effort", "type": "ces", "text": {"en": "How easy was it?"}},
]


class Stack:
    """One workspace on the three services."""

    def __init__(
        self,
        journey: httpx.AsyncClient,
        feedback: httpx.AsyncClient,
        scoring: httpx.AsyncClient,
        keys: Keys,
        workspace: str,
    ) -> None:
        self.journey, self.feedback, self.scoring = journey, feedback, scoring
        self.keys, self.workspace = keys, workspace
        self.headers = keys.headers(workspace, SCOPES)

    def other(self, workspace: str) -> Stack:
        return Stack(self.journey, self.feedback, self.scoring, self.keys, workspace)

    async def _ok(self, client: httpx.AsyncClient, method: str, url: str, status: int, **kw: Any) -> Any:
        response = await client.request(method, url, headers=self.headers, **kw)
        assert response.status_code == status, response.text
        return response.json()

    async def build_journey(
        self,
        key: str,
        touchpoints: list[tuple[str, str, str | None, bool]],
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """A journey with the default stages; touchpoints as (key, stage key, yearly cost, designed MoT)."""
        journey = await self._ok(self.journey, "POST", "/v1/journeys", 201, json={"key": key, "name": key})
        stages = {
            s["key"]: s
            for s in (await self._ok(self.journey, "GET", f"/v1/journeys/{journey['id']}/stages", 200))["items"]
        }
        made: dict[str, dict[str, Any]] = {}
        for tp_key, stage, cost, mot in touchpoints:
            body: dict[str, Any] = {"key": tp_key, "name": tp_key, "channel": "web"}
            if cost is not None:
                body["yearly_cost"] = cost
            made[tp_key] = await self._ok(self.journey, "POST", "/v1/touchpoints", 201, json=body)
            await self._ok(
                self.journey,
                "POST",
                f"/v1/journeys/{journey['id']}/steps",
                201,
                json={"stage_id": stages[stage]["id"], "touchpoint_id": made[tp_key]["id"], "moment_of_truth": mot},
            )
        return journey, made

    async def interactions(self, items: list[dict[str, Any]]) -> None:
        for start in range(0, len(items), 10_000):
            result = await self._ok(
                self.journey, "POST", "/v1/interactions/bulk", 200, json={"items": items[start : start + 10_000]}
            )
            assert result["counts"]["failed"] == 0, result

    async def outcomes(self, items: list[dict[str, Any]]) -> None:
        for start in range(0, len(items), 10_000):
            result = await self._ok(
                self.journey, "POST", "/v1/outcomes/bulk", 200, json={"items": items[start : start + 10_000]}
            )
            assert result["counts"]["failed"] == 0, result

    async def survey(self, key: str = "journey-survey") -> dict[str, Any]:
        body = {"key": key, "name": key, "kind": "nps", "status": "active", "questions": SURVEY_QUESTIONS}
        return await self._ok(self.feedback, "POST", "/v1/surveys", 201, json=body)  # type: ignore[no-any-return]

    async def responses(self, items: list[dict[str, Any]]) -> None:
        for start in range(0, len(items), 10_000):
            result = await self._ok(
                self.feedback, "POST", "/v1/responses/bulk", 200, json={"items": items[start : start + 10_000]}
            )
            assert result["counts"]["failed"] == 0, result

    async def scoring_get(self, url: str, **params: Any) -> httpx.Response:
        return await self.scoring.get(url, headers=self.headers, params=params)

    async def scores(
        self, journey_id: str, *, within: float = 30.0, fitted: bool = True, **expect: int
    ) -> dict[str, Any]:
        """The journey's scores once their counts are `expect` (the read model follows the events), and
        (`fitted`) its models were fitted on them."""
        kinds = ("counts", "fit_counts") if fitted else ("counts",)

        async def ready() -> dict[str, Any] | None:
            response = await self.scoring_get(f"/v1/journeys/{journey_id}/scores")
            if response.status_code != 200:
                return None
            body: dict[str, Any] = response.json()
            return body if all(body[c][k] == v for k, v in expect.items() for c in kinds) else None

        return await eventually(ready, within=within, every=0.2)


BASE = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
CUSTOMERS = 90


def at(minutes: float) -> str:
    return (BASE + timedelta(minutes=minutes)).isoformat()


async def small_journey(stack: Stack) -> dict[str, Any]:
    """90 customers: all saw the ad, two thirds used the shop, a quarter called support; buyers are the
    shop's users with even numbers; likelihood to recommend is higher for shop users."""
    journey, tps = await stack.build_journey(
        "buy-a-bike",
        [("ad", "need", "50000.00", False), ("shop", "buy", "20000.00", True), ("support", "use", "80000.00", False)],
    )
    survey = await stack.survey()
    touches, outcomes, answers = [], [], []
    for i in range(CUSTOMERS):
        c = f"c{i:03d}"
        met = ["ad"] + (["shop"] if i % 3 else []) + (["support"] if i % 4 == 0 else [])
        for k, tp in enumerate(met):
            touches.append({"event_id": f"{c}-{tp}", "customer": c, "touchpoint": tp, "occurred_at": at(i + k)})
        if "shop" in met and i % 2 == 0:
            outcomes.append({"event_id": f"{c}-buy", "customer": c, "name": "purchase", "occurred_at": at(i + 2.5)})
        ltr = (9 + i % 2) if "shop" in met else (3 + i % 5)
        answers.append(
            {
                "survey_id": survey["id"],
                "customer_external_id": c,
                "journey_key": "buy-a-bike",
                "submitted_at": at(i + 3),
                "answers": {"recommend": ltr},
            }
        )
        answers.append(
            {
                "survey_id": survey["id"],
                "customer_external_id": c,
                "journey_key": "buy-a-bike",
                "touchpoint_key": met[-1],
                "submitted_at": at(i + 3.5),
                "answers": {"satisfied": 5 if met[-1] == "shop" else 2 + i % 3, "effort": 2 + i % 4},
            }
        )
    await stack.interactions(touches)
    await stack.outcomes(outcomes)
    await stack.responses(answers)
    scores = await stack.scores(
        journey["id"], customers=CUSTOMERS, interactions=len(touches), responses=len(answers), conversions=len(outcomes)
    )
    return {"journey": journey, "touchpoints": tps, "scores": scores}
