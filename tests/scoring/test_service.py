"""The scoring service end to end: a journey built through the journey and feedback services' APIs,
scored from their events alone, read back through every route, checked against what the other
services answer directly."""

from __future__ import annotations

import functools
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text

from services.common.db import create_engine, create_sessionmaker
from services.scoring.models import MAX_SCOPES
from services.scoring.recompute import FIT, score_journey
from services.scoring.settings import ScoringSettings
from services.scoring.views import ScoresBatch
from tests.conftest import Servers
from tests.events import published_events
from tests.eventually import eventually
from tests.scoring.factories import CUSTOMERS, Stack, at, small_journey


class TestScoresFollowTheEvents:
    async def test_reach_matches_the_journey_service_and_nps_the_feedback_service(self, stack: Stack) -> None:
        built = await small_journey(stack)
        journey_id, scores = built["journey"]["id"], built["scores"]
        reach = (await stack.journey.get(f"/v1/journeys/{journey_id}/reach", headers=stack.headers)).json()
        by_tp = {t["key"]: t for t in scores["touchpoints"]}
        assert reach["journey_customers"] == scores["counts"]["customers"] == CUSTOMERS
        for step in reach["steps"]:
            assert by_tp[step["touchpoint"]]["reach_n"] == step["customers"]
            assert by_tp[step["touchpoint"]]["reach"] == pytest.approx(step["reach"])
        nps = (
            await stack.feedback.get("/v1/metrics/nps", headers=stack.headers, params={"journey_key": "buy-a-bike"})
        ).json()["overall"]
        component = {c["name"]: c for c in scores["health"]["components"]}["nps"]
        assert nps["n"] == CUSTOMERS  # one answer each: the feedback service's NPS is the customers' NPS
        assert component["raw"] == pytest.approx(nps["value"])
        assert component["n"] == CUSTOMERS

    async def test_every_route_answers_the_same_snapshot(self, stack: Stack) -> None:
        built = await small_journey(stack)
        journey_id, scores = built["journey"]["id"], built["scores"]
        for route in ("relevance", "portfolio", "moments-of-truth", "pain-points", "health", "attribution"):
            response = await stack.scoring_get(f"/v1/journeys/{journey_id}/{route}")
            assert response.status_code == 200, (route, response.text)
            assert response.json()["snapshot_id"] == scores["snapshot_id"]
        markov = (await stack.scoring_get(f"/v1/journeys/{journey_id}/attribution", model="markov")).json()
        assert [a["model"] for a in markov["attribution"]] == ["markov"]
        assert sum(markov["attribution"][0]["credit"].values()) == pytest.approx(scores["counts"]["conversions"])
        history = (await stack.scoring_get(f"/v1/journeys/{journey_id}/history")).json()
        assert history["items"][0]["snapshot_id"] == scores["snapshot_id"]
        unknown = str(uuid.uuid4())
        batch = (await stack.scoring_get("/v1/scores", journey_id=[journey_id, journey_id, unknown])).json()
        ScoresBatch.model_validate(batch)  # served as stored: it still matches its documented schema
        assert [s["snapshot_id"] for s in batch["items"]] == [scores["snapshot_id"]]
        assert batch["not_scored"] == [unknown]
        shop = built["touchpoints"]["shop"]["id"]
        priority = (await stack.scoring_get("/v1/priorities", touchpoint_id=[shop])).json()["items"][0]
        assert [j["journey_id"] for j in priority["journeys"]] == [journey_id]
        # A batch answers each touchpoint as its own read does, whatever else it asks for.
        ids = [t["id"] for t in built["touchpoints"].values()]
        batch_items = (await stack.scoring_get("/v1/priorities", touchpoint_id=ids)).json()["items"]
        alone = [(await stack.scoring_get(f"/v1/touchpoints/{t}/priority")).json() for t in ids]
        assert batch_items == alone
        # its purchases carry no value: nothing to weigh the journey by, no priority (was a 500)
        by_value = (await stack.scoring_get(f"/v1/touchpoints/{shop}/priority", weight_by="value")).json()
        assert (by_value["priority"], [j["weight"] for j in by_value["journeys"]]) == (None, [0.0])

    async def test_each_snapshot_publishes_score_updated(
        self, stack: Stack, scoring_app: FastAPI, servers: Servers
    ) -> None:
        built = await small_journey(stack)
        events = await published_events(scoring_app, servers.nats_url, stack.workspace, stream="SCORING")
        mine = [e for e in events if e["data"]["journey_id"] == built["journey"]["id"]]
        assert mine
        assert all(e["type"] == "scoring.score.updated" for e in mine)
        assert [e["version"] for e in mine] == list(range(1, len(mine) + 1))
        assert built["scores"]["snapshot_id"] in {e["data"]["snapshot_id"] for e in mine}


class TestScopesAndSettings:
    async def test_a_window_scope_is_scored_after_recompute(self, stack: Stack) -> None:
        built = await small_journey(stack)
        journey_id = built["journey"]["id"]
        window = {"since": at(0), "until": at(30)}
        assert (await stack.scoring_get(f"/v1/journeys/{journey_id}/scores", **window)).status_code == 404
        response = await stack.scoring.post(f"/v1/journeys/{journey_id}/recompute", headers=stack.headers, json=window)
        assert response.status_code == 202, response.text

        async def windowed() -> dict[str, Any] | None:
            r = await stack.scoring_get(f"/v1/journeys/{journey_id}/scores", **window)
            return r.json() if r.status_code == 200 else None

        scores = await eventually(windowed, within=20)
        assert scores["counts"]["customers"] == 30  # customers i < 30 met the ad inside the window

    async def test_a_persona_scope_counts_only_its_customers(self, stack: Stack) -> None:
        built = await small_journey(stack)
        journey_id = built["journey"]["id"]
        rule = {"name": "shoppers", "when": {"attribute": "segment", "op": "eq", "value": "shop"}}
        persona = await stack._ok(
            stack.journey, "POST", "/v1/personas", 201, json={"key": "shopper", "name": "Shopper", "rules": [rule]}
        )
        profiles = [
            {"external_id": f"c{i:03d}", "profile": {"segment": "shop" if i % 3 else "browse"}}
            for i in range(CUSTOMERS)
        ]
        await stack._ok(stack.journey, "POST", "/v1/customers/bulk", 200, json={"items": profiles})
        scope = {"persona_id": persona["id"]}
        response = await stack.scoring.post(f"/v1/journeys/{journey_id}/recompute", headers=stack.headers, json=scope)
        assert response.status_code == 202, response.text

        async def of_the_persona() -> dict[str, Any] | None:
            r = await stack.scoring_get(f"/v1/journeys/{journey_id}/scores", **scope)
            # the customers' persona events may arrive after the first scoring of the scope
            return r.json() if r.status_code == 200 and r.json()["counts"]["customers"] == 60 else None

        scores = await eventually(of_the_persona, within=30)
        reach = {t["touchpoint_id"]: t["reach"] for t in scores["touchpoints"]}
        assert reach[built["touchpoints"]["shop"]["id"]] == 1.0  # every shopper used the shop
        everyone = await stack.scores(journey_id)
        assert everyone["counts"]["customers"] == CUSTOMERS
        # Customers who leave the persona leave its scope's scores, with no other event to trigger them.
        leaving = [{"external_id": f"c{i:03d}", "profile": {"segment": "browse"}} for i in range(45) if i % 3]
        await stack._ok(stack.journey, "POST", "/v1/customers/bulk", 200, json={"items": leaving})

        async def after_leaving() -> dict[str, Any] | None:
            r = await stack.scoring_get(f"/v1/journeys/{journey_id}/scores", **scope)
            return r.json() if r.json()["counts"]["customers"] == 60 - len(leaving) else None

        await eventually(after_leaving, within=30)

    async def test_scopes_are_listed_bounded_and_removable(self, stack: Stack) -> None:
        built = await small_journey(stack)
        journey_id = built["journey"]["id"]
        scopes_url, recompute_url = f"/v1/journeys/{journey_id}/scopes", f"/v1/journeys/{journey_id}/recompute"
        listed = (await stack.scoring_get(scopes_url)).json()["items"]
        assert [(s["persona_id"], s["since"], s["until"]) for s in listed] == [(None, None, None)]
        for minute in range(MAX_SCOPES - 1):
            added = await stack.scoring.post(recompute_url, headers=stack.headers, json={"since": at(minute)})
            assert added.status_code == 202, added.text
        again = await stack.scoring.post(recompute_url, headers=stack.headers, json={"since": at(0)})
        assert again.status_code == 202, again.text  # a scope it keeps already is no new one
        refused = await stack.scoring.post(recompute_url, headers=stack.headers, json={"since": at(99)})
        assert refused.status_code == 409, refused.text
        assert "DELETE /v1/journeys/{id}/scopes" in refused.json()["detail"]

        removed = await stack.scoring.delete(scopes_url, headers=stack.headers, params={"since": at(0)})
        assert removed.status_code == 204, removed.text
        assert len((await stack.scoring_get(scopes_url)).json()["items"]) == MAX_SCOPES - 1
        assert (await stack.scoring_get(f"/v1/journeys/{journey_id}/history", since=at(0))).status_code == 404
        added = await stack.scoring.post(recompute_url, headers=stack.headers, json={"since": at(99)})
        assert added.status_code == 202, added.text
        assert (await stack.scoring.delete(scopes_url, headers=stack.headers)).status_code == 422  # the default
        gone = await stack.scoring.delete(scopes_url, headers=stack.headers, params={"since": at(0)})
        assert gone.status_code == 404

    async def test_settings_need_admin_and_rescore(self, stack: Stack) -> None:
        reader = stack.keys.headers(stack.workspace, ["scores:read"])
        defaults = (await stack.scoring.get("/v1/settings", headers=reader)).json()
        assert defaults["relevance_basis"] == "nps"
        assert defaults["version"] == 0
        body = {
            **{k: v for k, v in defaults.items() if k not in ("version", "updated_at")},
            "relevance_basis": "conversion",
        }
        assert (await stack.scoring.put("/v1/settings", headers=reader, json=body)).status_code == 403
        saved = await stack.scoring.put("/v1/settings", headers=stack.headers, json=body)
        assert saved.status_code == 200, saved.text
        assert saved.json()["version"] == 1

    async def test_settings_and_scopes_refuse_what_cannot_be_scored(self, stack: Stack) -> None:
        built = await small_journey(stack)
        journey_id = built["journey"]["id"]
        # JSON's NaN and Infinity (which Python's parser reads) would be stored as null: refused.
        for bad in ('{"health_weights": {"nps": NaN, "conversion": 1}}', '{"relevance_threshold": Infinity}'):
            headers = {**stack.headers, "Content-Type": "application/json"}
            put = await stack.scoring.put("/v1/settings", headers=headers, content=bad)
            assert put.status_code == 422, put.text
            assert put.headers["content-type"] == "application/problem+json"
        assert (await stack.scoring.get("/v1/settings", headers=stack.headers)).status_code == 200
        # A scope's times carry their zone and stay in the bounds every service accepts.
        for scope in (
            {"since": "2026-01-01T00:00:00", "until": "2026-02-01T00:00:00Z"},
            {"since": "1800-01-01T00:00:00Z"},
        ):
            post = await stack.scoring.post(f"/v1/journeys/{journey_id}/recompute", headers=stack.headers, json=scope)
            assert post.status_code == 422, post.text

    async def test_a_deleted_journey_has_no_scores(self, stack: Stack) -> None:
        built = await small_journey(stack)
        journey_id = built["journey"]["id"]
        deleted = await stack.journey.delete(f"/v1/journeys/{journey_id}", headers=stack.headers)
        assert deleted.status_code == 204, deleted.text

        async def gone() -> bool:
            return (await stack.scoring_get(f"/v1/journeys/{journey_id}/scores")).status_code == 404

        await eventually(gone, within=20)
        batch = (await stack.scoring_get("/v1/scores", journey_id=[journey_id])).json()
        assert batch == {"items": [], "not_scored": [journey_id]}


class TestTenancy:
    async def test_another_workspace_sees_nothing(self, stack: Stack) -> None:
        built = await small_journey(stack)
        journey_id = built["journey"]["id"]
        other = stack.other(stack.workspace + "_b")
        for route in ("scores", "portfolio", "health", "history"):
            assert (await other.scoring_get(f"/v1/journeys/{journey_id}/{route}")).status_code == 404
        batch = (await other.scoring_get("/v1/scores", journey_id=[journey_id])).json()
        assert batch == {"items": [], "not_scored": [journey_id]}
        shop = built["touchpoints"]["shop"]["id"]
        priority = (await other.scoring_get(f"/v1/touchpoints/{shop}/priority")).json()
        assert priority["journeys"] == []
        assert priority["priority"] is None
        recompute = await other.scoring.post(f"/v1/journeys/{journey_id}/recompute", headers=other.headers)
        assert recompute.status_code == 404


class TestRecomputeLease:
    async def test_a_recompute_whose_lease_was_taken_over_stores_nothing(
        self, stack: Stack, scoring_settings: ScoringSettings
    ) -> None:
        built = await small_journey(stack)
        journey_id = uuid.UUID(built["journey"]["id"])
        engine = create_engine(scoring_settings.database_url)
        sessionmaker = create_sessionmaker(engine)
        mine, theirs = uuid.uuid4(), uuid.uuid4()
        held = {"w": stack.workspace, "j": journey_id, "lease": theirs}
        try:
            async with sessionmaker() as session, session.begin():  # another replica took the journey over
                await session.execute(TAKEN_OVER, held)
            score = functools.partial(score_journey, sessionmaker, workspace_id=stack.workspace, journey_id=journey_id)
            assert await score(bootstrap=20, lease=(FIT, mine)) == []
            history = (await stack.scoring_get(f"/v1/journeys/{journey_id}/history")).json()["items"]
            assert history[0]["snapshot_id"] == built["scores"]["snapshot_id"]  # nothing stored
            stored = await score(bootstrap=20, lease=(FIT, theirs))
            assert [s.snapshot_id for s in stored] == [
                uuid.UUID(h["snapshot_id"])
                for h in (await stack.scoring_get(f"/v1/journeys/{journey_id}/history")).json()["items"][:1]
            ]
        finally:
            async with sessionmaker() as session, session.begin():
                await session.execute(
                    text("DELETE FROM dirty_journey WHERE workspace_id = :w AND journey_id = :j"), held
                )
            await engine.dispose()


TAKEN_OVER = text(
    "INSERT INTO dirty_journey (workspace_id, journey_id, fit_leased_until, fit_lease) "
    "VALUES (:w, :j, now() + interval '1 hour', :lease) "
    "ON CONFLICT (workspace_id, journey_id) DO UPDATE SET fit_lease = EXCLUDED.fit_lease, "
    "fit_leased_until = EXCLUDED.fit_leased_until"
)
FORGET = text("DELETE FROM dirty_journey WHERE workspace_id = :w AND journey_id = :j")
