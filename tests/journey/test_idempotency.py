"""Idempotency-Key on POST: a retry returns the original result and does the work once."""

from __future__ import annotations

import asyncio

from tests.journey.factories import JourneyApi

BODY = {"key": "hotline", "name": "Hotline", "channel": "phone"}


class TestIdempotentReplay:
    async def test_retry_with_same_key_and_body_returns_the_original(self, api: JourneyApi) -> None:
        first = await api.post("/v1/touchpoints", json=BODY, headers={"Idempotency-Key": "abc"})
        second = await api.post("/v1/touchpoints", json=BODY, headers={"Idempotency-Key": "abc"})
        assert (first.status_code, second.status_code) == (201, 201)
        assert second.json() == first.json()
        assert second.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert len((await api.get("/v1/touchpoints")).json()["items"]) == 1

    async def test_key_order_in_the_body_does_not_matter(self, api: JourneyApi) -> None:
        await api.post("/v1/touchpoints", json=BODY, headers={"Idempotency-Key": "abc"})
        reordered = dict(reversed(list(BODY.items())))
        again = await api.post("/v1/touchpoints", json=reordered, headers={"Idempotency-Key": "abc"})
        assert again.headers.get("idempotent-replayed") == "true"

    async def test_same_key_with_another_body_is_a_conflict(self, api: JourneyApi) -> None:
        await api.post("/v1/touchpoints", json=BODY, headers={"Idempotency-Key": "abc"})
        other = await api.post("/v1/touchpoints", json={**BODY, "name": "Other"}, headers={"Idempotency-Key": "abc"})
        assert other.status_code == 409
        assert "different request body" in other.json()["detail"]

    async def test_same_key_on_another_endpoint_is_a_conflict(self, api: JourneyApi) -> None:
        await api.post("/v1/touchpoints", json=BODY, headers={"Idempotency-Key": "abc"})
        other = await api.post("/v1/personas", json={"key": "p", "name": "P"}, headers={"Idempotency-Key": "abc"})
        assert other.status_code == 409
        assert "POST /v1/touchpoints" in other.json()["detail"]

    async def test_keys_are_per_workspace(self, api: JourneyApi) -> None:
        mine = await api.post("/v1/touchpoints", json=BODY, headers={"Idempotency-Key": "abc"})
        theirs = await api.other().post("/v1/touchpoints", json=BODY, headers={"Idempotency-Key": "abc"})
        assert theirs.status_code == 201
        assert "idempotent-replayed" not in theirs.headers
        assert theirs.json()["id"] != mine.json()["id"]

    async def test_a_failed_request_does_not_use_up_the_key(self, api: JourneyApi) -> None:
        bad = await api.post("/v1/touchpoints", json={**BODY, "channel": "fax"}, headers={"Idempotency-Key": "k"})
        assert bad.status_code == 422
        good = await api.post("/v1/touchpoints", json=BODY, headers={"Idempotency-Key": "k"})
        assert good.status_code == 201
        assert "idempotent-replayed" not in good.headers

    async def test_concurrent_requests_with_one_key_store_once(self, api: JourneyApi) -> None:
        responses = await asyncio.gather(
            *(api.post("/v1/touchpoints", json=BODY, headers={"Idempotency-Key": "race"}) for _ in range(4))
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses[0] == 201
        assert all(s in (201, 409) for s in statuses)
        assert len((await api.get("/v1/touchpoints")).json()["items"]) == 1
        retry = await api.post("/v1/touchpoints", json=BODY, headers={"Idempotency-Key": "race"})
        assert retry.status_code == 201
        assert retry.headers["idempotent-replayed"] == "true"

    async def test_empty_key_is_refused(self, api: JourneyApi) -> None:
        response = await api.post("/v1/touchpoints", json=BODY, headers={"Idempotency-Key": "  "})
        assert response.status_code == 400
        assert "empty" in response.json()["detail"]
