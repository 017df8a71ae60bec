"""Idempotency-Key on POST: a retry returns the original result and does the work once."""

from __future__ import annotations

import asyncio

import orjson
from fastapi import FastAPI

from tests.journey.activity_factories import at, touch
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
        assert "different request" in other.json()["detail"]

    async def test_same_key_and_body_with_another_query_or_content_type_is_a_conflict(self, api: JourneyApi) -> None:
        first = await api.post("/v1/touchpoints", json=BODY, headers={"Idempotency-Key": "q"})
        assert first.status_code == 201
        other_body = {**BODY, "key": "chat"}
        one_order = await api.post("/v1/touchpoints", params={"b": "2", "a": "1"}, json=other_body,
                                   headers={"Idempotency-Key": "q2"})  # fmt: skip
        assert one_order.status_code == 201
        reordered = await api.post("/v1/touchpoints", params={"a": "1", "b": "2"}, json=other_body,
                                   headers={"Idempotency-Key": "q2"})  # fmt: skip
        assert reordered.headers.get("idempotent-replayed") == "true"  # the query's order does not matter
        other_query = await api.post("/v1/touchpoints", params={"a": "2"}, json=BODY, headers={"Idempotency-Key": "q"})
        assert other_query.status_code == 409, other_query.text
        assert "different request" in other_query.json()["detail"]
        other_type = await api.post(
            "/v1/touchpoints",
            content=orjson.dumps(BODY),
            headers={"Idempotency-Key": "q", "Content-Type": "application/vnd.api+json"},
        )
        assert other_type.status_code == 409, other_type.text
        assert "different request" in other_type.json()["detail"]

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

    async def test_concurrent_requests_with_one_key_store_once_and_replay(self, api: JourneyApi) -> None:
        responses = await asyncio.gather(
            *(api.post("/v1/touchpoints", json=BODY, headers={"Idempotency-Key": "race"}) for _ in range(20))
        )
        originals = [r for r in responses if "idempotent-replayed" not in r.headers]
        assert [r.status_code for r in originals] == [201], [r.text for r in originals]
        # The others waited for the first one's commit and replay its answer: no domain 409
        # ("a touchpoint with key ... exists") that would look permanent.
        assert all(r.status_code == 201 and r.json() == originals[0].json() for r in responses)
        assert len((await api.get("/v1/touchpoints")).json()["items"]) == 1

    async def test_empty_key_is_refused(self, api: JourneyApi) -> None:
        response = await api.post("/v1/touchpoints", json=BODY, headers={"Idempotency-Key": "  "})
        assert response.status_code == 400
        assert "empty" in response.json()["detail"]


IMPORT = "/v1/interactions/import"
NDJSON = {"Content-Type": "application/x-ndjson"}


class TestImports:
    async def test_an_import_with_a_key_is_replayed_not_run_again(self, api: JourneyApi) -> None:
        await api.touchpoint("shop", "web")
        body = b"\n".join(orjson.dumps(touch(f"e{i}", "c1", "shop", at(i))) for i in range(3))
        headers = {**NDJSON, "Idempotency-Key": "history-1"}
        first = await api.post(IMPORT, content=body, headers=headers)
        again = await api.post(IMPORT, content=body, headers=headers)
        assert (first.status_code, again.status_code) == (200, 200)
        assert orjson.loads(first.text.splitlines()[-1])["counts"]["created"] == 3
        assert again.text == first.text  # the stored answer, not a second run ("duplicate" × 3)
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["content-type"].startswith("application/x-ndjson")
        other = await api.post(IMPORT, content=body + b"\n", headers={**headers, "Content-Type": "text/csv"})
        assert other.status_code in (409, 415)
        changed = await api.post(IMPORT, content=body.replace(b"e0", b"e9"), headers=headers)
        assert changed.status_code == 409
        assert "different request" in changed.json()["detail"]

    async def test_concurrent_imports_with_one_key_run_once(self, api: JourneyApi) -> None:
        await api.touchpoint("shop", "web")
        body = b"\n".join(orjson.dumps(touch(f"e{i}", "c1", "shop", at(i))) for i in range(3))
        headers = {**NDJSON, "Idempotency-Key": "history-race"}
        answers = await asyncio.gather(*(api.post(IMPORT, content=body, headers=headers) for _ in range(5)))
        assert {a.text for a in answers} == {answers[0].text}
        assert '"created":3' in answers[0].text
        assert sum("idempotent-replayed" not in a.headers for a in answers) == 1

    async def test_an_empty_import_is_a_422(self, api: JourneyApi) -> None:
        for path in (IMPORT, "/v1/outcomes/import"):
            for body in (b"", b"\n \n"):
                response = await api.post(path, content=body, headers=NDJSON)
                assert response.status_code == 422, response.text
                assert response.headers["content-type"] == "application/problem+json"
                assert response.json()["type"] == "https://journeygraph.dev/problems/validation-error"
                assert "empty" in response.json()["detail"]

    async def test_an_import_of_another_media_type_is_a_documented_415(
        self, api: JourneyApi, journey_app: FastAPI
    ) -> None:
        response = await api.post(IMPORT, content=b"a,b\n1,2\n", headers={"Content-Type": "text/csv"})
        assert response.status_code == 415, response.text
        assert "application/x-ndjson" in response.json()["detail"]
        paths = journey_app.openapi()["paths"]
        for path in (IMPORT, "/v1/outcomes/import"):
            assert "application/problem+json" in paths[path]["post"]["responses"]["415"]["content"]
