"""The responses import honours Idempotency-Key: its key covers the query string (the survey of CSV
rows); an empty body is a 422 and the 415 is documented."""

from __future__ import annotations

from fastapi import FastAPI

from tests.feedback.factories import FeedbackApi


class TestFeedbackImport:
    async def test_same_key_and_csv_for_another_survey_is_a_conflict_not_a_replay(
        self,
        api: FeedbackApi,
    ) -> None:
        first, second = await api.survey("first", status="closed"), await api.survey("second", status="closed")
        csv_body = "response_id,answers.recommend\nr1,9\n"
        headers = {"Content-Type": "text/csv", "Idempotency-Key": "history"}
        imported = await api.post(
            "/v1/responses/import", params={"survey_id": first["id"]}, content=csv_body, headers=headers
        )
        assert imported.status_code == 200, imported.text
        replay = await api.post(
            "/v1/responses/import", params={"survey_id": first["id"]}, content=csv_body, headers=headers
        )
        assert replay.headers["idempotent-replayed"] == "true"
        other = await api.post(
            "/v1/responses/import", params={"survey_id": second["id"]}, content=csv_body, headers=headers
        )
        assert other.status_code == 409, other.text
        assert "different request" in other.json()["detail"]

    async def test_an_empty_import_is_a_422_and_415_is_documented(
        self,
        feedback_app: FastAPI,
        api: FeedbackApi,
    ) -> None:
        empty = await api.post("/v1/responses/import", content=b"", headers={"Content-Type": "application/x-ndjson"})
        assert empty.status_code == 422, empty.text
        assert empty.json()["type"] == "https://journeygraph.dev/problems/validation-error"
        unsupported = await api.post("/v1/responses/import", content=b"x", headers={"Content-Type": "text/plain"})
        assert unsupported.status_code == 415
        documented = feedback_app.openapi()["paths"]["/v1/responses/import"]["post"]["responses"]
        assert "application/problem+json" in documented["415"]["content"]
