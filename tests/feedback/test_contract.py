"""What probing the feedback API from outside found (issue 12), one class per kind of finding:
references checked in the workspace, bounded ISO times, PATCH with null, paths that do not
collide, one name per concept, the kit's bulk and list shapes, and every answered status documented."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from tests.feedback.db import execute
from tests.feedback.factories import FeedbackApi


def field_errors(body: dict[str, Any]) -> dict[str, str]:
    return {e["field"]: e["message"] for e in body.get("errors") or []}


class TestReferences:
    async def test_rule_for_an_unknown_or_foreign_survey_is_422_naming_it(self, api: FeedbackApi) -> None:
        foreign = await api.other().survey()
        for survey_id in (foreign["id"], "0196f3a2-6c1e-7cc0-9a1d-2b8f0e7d1a10"):
            response = await api.post("/v1/loop-rules", json={"name": "x", "survey_id": survey_id})
            assert response.status_code == 422, response.text
            assert "no survey with id" in field_errors(response.json())["survey_id"]
        own = await api.survey()
        rule = await api.created("/v1/loop-rules", {"name": "x", "survey_id": own["id"]})
        moved = await api.patch(f"/v1/loop-rules/{rule['id']}", json={"survey_id": foreign["id"]})
        assert moved.status_code == 422, moved.text
        assert "survey_id" in field_errors(moved.json())
        assert (await api.ok(f"/v1/loop-rules/{rule['id']}"))["survey_id"] == own["id"]

    async def test_rule_for_a_theme_the_analysis_never_finds_is_422(self, api: FeedbackApi) -> None:
        response = await api.post(
            "/v1/loop-rules", json={"name": "x", "metric": None, "max_score": None, "theme": "weather"}
        )
        assert response.status_code == 422, response.text
        assert "price" in field_errors(response.json())["theme"]

    async def test_case_for_an_unknown_or_foreign_response_is_422_naming_it(self, api: FeedbackApi) -> None:
        other = api.other()
        survey = await other.survey()
        foreign = await other.respond(survey["id"], {"recommend": 9})
        for response_id in (foreign["id"], "0196f3a2-6c1e-7cc0-9a1d-2b8f0e7d1a10"):
            response = await api.post("/v1/cases", json={"response_id": response_id})
            assert response.status_code == 422, response.text
            assert "no response with id" in field_errors(response.json())["response_id"]


MOVE_IN_TIME = (
    "UPDATE response SET submitted_at = CAST(CAST(:at AS text) AS timestamptz) "
    "WHERE workspace_id = :w AND customer_external_id = :c"
)


class TestTimes:
    async def test_submitted_at_out_of_bounds_or_without_zone_is_refused(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        for value, words in (
            ("9999-01-01T00:00:00Z", "2100-01-01"),
            ("1899-12-31T23:00:00Z", "1900-01-01"),
            ("2025-01-01T10:00:00", "zone"),
            (0.5, "ISO 8601"),
        ):
            body = {"survey_id": survey["id"], "answers": {"recommend": 9}, "submitted_at": value}
            response = await api.post("/v1/responses", json=body)
            assert response.status_code == 422, response.text
            assert words in field_errors(response.json())["body.submitted_at"]
            result = await api.bulk([body])
            assert result["items"][0]["status"] == "failed"
        stored = await api.respond(survey["id"], {"recommend": 9}, submitted_at="2099-12-31T23:59:59+02:00")
        assert stored["submitted_at"] == "2099-12-31T21:59:59Z"

    async def test_eligibility_answers_whatever_time_is_stored(self, api: FeedbackApi, feedback_app: FastAPI) -> None:
        survey = await api.survey()
        for customer in ("far", "farther"):
            await api.respond(survey["id"], {"recommend": 9}, customer_external_id=customer)
        # written before the bounds existed, or by hand: the check must still answer
        for customer, at in (("far", "9999-12-31T23:00:00Z"), ("farther", "12000-01-01T00:00:00Z")):
            await execute(feedback_app, MOVE_IN_TIME, at=at, w=api.workspace, c=customer)
            response = await api.get("/v1/eligibility", params={"customer": customer})
            assert response.status_code == 200, response.text
            assert (response.json()["eligible"], response.json()["next_eligible_at"]) == (False, None)

    @pytest.mark.parametrize("url", ["/v1/responses", "/v1/metrics/nps", "/v1/comments/summary"])
    @pytest.mark.parametrize("value", ["0.5", "1700000000", "9999-01-01T00:00:00Z", "yesterday"])
    async def test_a_time_query_is_iso_text_within_bounds(self, api: FeedbackApi, url: str, value: str) -> None:
        for name in ("since", "until"):
            response = await api.get(url, params={name: value})
            assert response.status_code == 422, response.text
            assert f"query.{name}" in field_errors(response.json())
        assert (await api.get(url, params={"since": "2025-01-01", "until": "2025-02-01T00:00:00+01:00"})).is_success

    async def test_a_case_due_time_is_bounded_with_a_zone(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        stored = await api.respond(survey["id"], {"recommend": 9})
        for due_at in ("0.5", "2025-03-01T10:00:00", "9999-01-01T00:00:00Z"):
            response = await api.post("/v1/cases", json={"response_id": stored["id"], "due_at": due_at})
            assert response.status_code == 422, response.text
            assert "body.due_at" in field_errors(response.json())


class TestPatchNull:
    async def test_survey_fields_cannot_be_null(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        for field in ("name", "status", "default_language", "questions"):
            response = await api.patch(f"/v1/surveys/{survey['id']}", json={field: None})
            assert response.status_code == 422, f"{field}: {response.text}"
            assert "cannot be null" in field_errors(response.json())[f"body.{field}"]
        assert (await api.ok(f"/v1/surveys/{survey['id']}"))["revision"] == 1

    async def test_rule_null_clears_an_optional_condition_and_is_422_for_the_rest(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        fields = {"survey_id": survey["id"], "touchpoint_key": "shop", "theme": "price", "assignee": "ann"}
        rule = await api.created("/v1/loop-rules", {"name": "x", **fields, "due_in_hours": 4})
        url = f"/v1/loop-rules/{rule['id']}"
        for field in ("name", "enabled", "priority"):
            response = await api.patch(url, json={field: None})
            assert response.status_code == 422, f"{field}: {response.text}"
            assert "cannot be null" in field_errors(response.json())[f"body.{field}"]
        cleared = ("survey_id", "touchpoint_key", "assignee", "due_in_hours")
        response = await api.patch(url, json=dict.fromkeys(cleared))
        assert response.status_code == 200, response.text
        assert [response.json()[f] for f in cleared] == [None] * 4
        theme_only = await api.patch(url, json={"metric": None, "max_score": None})
        assert (theme_only.status_code, theme_only.json()["theme"]) == (200, "price")
        no_condition = await api.patch(url, json={"theme": None})
        assert no_condition.status_code == 422, no_condition.text

    async def test_case_status_cannot_be_null_assignee_and_due_time_clear(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        stored = await api.respond(survey["id"], {"recommend": 9})
        case = await api.created(
            "/v1/cases", {"response_id": stored["id"], "assignee": "eve", "due_at": "2026-12-24T12:00:00+01:00"}
        )
        url = f"/v1/cases/{case['id']}"
        response = await api.patch(url, json={"status": None})
        assert response.status_code == 422, response.text
        assert "cannot be null" in field_errors(response.json())["body.status"]
        cleared = await api.patch(url, json={"assignee": None, "due_at": None})
        assert cleared.status_code == 200, cleared.text
        assert (cleared.json()["assignee"], cleared.json()["due_at"], cleared.json()["version"]) == (None, None, 2)
        history = (await api.get(url)).json()["history"]
        # the history renders times as every response does (Z), not Python's isoformat (+00:00)
        assert history[-1]["changes"]["due_at"] == {"from": "2026-12-24T11:00:00Z", "to": None}, history

    async def test_integers_and_booleans_are_json_integers_and_booleans(self, api: FeedbackApi) -> None:
        # pydantic's lax mode read `false` as 0 days and `0` as a flag: not what the schema says
        for body in ({"quiet_days": False}, {"period_days": "30"}, {"allow_private_webhook_targets": 0}):
            response = await api.admin().put("/v1/settings", json=body)
            assert response.status_code == 422, f"{body}: {response.text}"
        survey = await api.survey()
        for body in ({"enabled": 1}, {"priority": True}, {"due_in_hours": "48"}):
            response = await api.post("/v1/loop-rules", json={"name": "r", "survey_id": survey["id"], **body})
            assert response.status_code == 422, f"{body}: {response.text}"

    async def test_settings_are_replaced_whole_and_take_no_null(self, api: FeedbackApi) -> None:
        for field in ("allow_private_webhook_targets", "max_surveys_per_period", "period_days", "quiet_days"):
            response = await api.admin().put("/v1/settings", json={field: None})
            assert response.status_code == 422, f"{field}: {response.text}"
            assert f"body.{field}" in field_errors(response.json())

    async def test_openapi_says_which_fields_take_null(self, api: FeedbackApi) -> None:
        schemas = (await api.ok("/openapi.json"))["components"]["schemas"]

        def nullable(model: str, field: str) -> bool:
            prop = schemas[model]["properties"][field]
            return any(b.get("type") == "null" for b in prop.get("anyOf", []))

        assert not any(nullable("SurveyUpdate", f) for f in ("name", "status", "default_language", "questions"))
        assert not any(nullable("RuleUpdate", f) for f in ("name", "enabled", "priority"))
        assert all(nullable("RuleUpdate", f) for f in ("survey_id", "touchpoint_key", "theme", "assignee"))
        assert (nullable("CaseUpdate", "status"), nullable("CaseUpdate", "assignee")) == (False, True)


class TestPaths:
    @pytest.mark.parametrize("path", ["/v1/responses/bulk", "/v1/responses/import"])
    async def test_a_get_of_a_post_only_path_is_405_not_an_id(self, api: FeedbackApi, path: str) -> None:
        response = await api.get(path)
        assert response.status_code == 405, response.text
        assert "POST" in response.headers["allow"]

    @pytest.mark.parametrize("path", ["/v1/responses/x1", "/v1/surveys/x1", "/v1/cases/x1", "/v1/loop-rules/x1"])
    async def test_an_id_that_is_no_uuid_matches_no_route(self, api: FeedbackApi, path: str) -> None:
        assert (await api.get(path)).status_code == 404


class TestOneName:
    async def test_time_ranges_are_since_and_until(self, api: FeedbackApi) -> None:
        spec = await api.ok("/openapi.json")
        names = {p["name"] for ops in spec["paths"].values() for op in ops.values() for p in op.get("parameters", [])}
        assert not names & {"from", "to", "compare_from", "compare_to"}
        survey = await api.survey()
        for day in ("2025-01-10", "2025-02-10"):
            await api.respond(survey["id"], {"recommend": 9}, submitted_at=f"{day}T10:00:00Z")
        window = {"since": "2025-02-01T00:00:00Z", "until": "2025-03-01T00:00:00Z"}
        listed = await api.ok("/v1/responses", params=window)
        assert [r["submitted_at"][:10] for r in listed["items"]] == ["2025-02-10"]
        result = await api.ok(
            "/v1/metrics/nps",
            params={**window, "compare_since": "2025-01-01", "compare_until": "2025-02-01", "source": "raw"},
        )
        assert result["window"] == window
        assert result["compared_window"] == {"since": "2025-01-01T00:00:00Z", "until": "2025-02-01T00:00:00Z"}
        assert result["overall"]["n"] == 1
        empty = await api.get("/v1/metrics/nps", params={"since": "2025-02-01", "until": "2025-01-01"})
        assert (empty.status_code, list(field_errors(empty.json()))) == (422, ["since"])


class TestShapes:
    async def test_bulk_answers_the_kit_shape(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        result = await api.bulk(
            [
                {"survey_id": survey["id"], "answers": {"recommend": 9}, "response_id": "k-1"},
                {"survey_id": survey["id"], "answers": {"recommend": 99}},
            ]
        )
        assert result["counts"] == {"created": 1, "duplicate": 0, "conflict": 0, "failed": 1}
        first, second = result["items"]
        assert set(first) == {"index", "key", "status", "id", "errors"}
        assert (first["index"], first["key"], first["status"], first["errors"]) == (0, "k-1", "created", None)
        assert (second["index"], second["status"], second["id"]) == (1, "failed", None)
        assert set(second["errors"][0]) == {"field", "message"}
        spec = await api.ok("/openapi.json")
        for path in ("/v1/responses/bulk", "/v1/responses/import"):
            ok = spec["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
            assert ok == {"$ref": "#/components/schemas/BulkResult"}
        assert set(spec["components"]["schemas"]["BulkResult"]["properties"]) == {"counts", "items"}

    async def test_every_list_is_a_page(self, api: FeedbackApi) -> None:
        survey = await api.survey()
        await api.respond(survey["id"], {"recommend": 9})
        questions = [{"key": "r", "type": "nps", "text": {"en": "?"}}]
        assert (await api.patch(f"/v1/surveys/{survey['id']}", json={"questions": questions})).json()["version"] == 2
        rules = [(await api.created("/v1/loop-rules", {"name": name}))["id"] for name in ("a", "b")]
        for url, ids, key in (
            ("/v1/loop-rules", rules, "id"),
            (f"/v1/surveys/{survey['id']}/versions", [1, 2], "version"),
        ):
            first = await api.ok(url, params={"limit": 1})
            assert first["next_cursor"] is not None, url
            second = await api.ok(url, params={"limit": 1, "cursor": first["next_cursor"]})
            assert [p["items"][0][key] for p in (first, second)] == ids
            assert second["next_cursor"] is None, url
        spec = await api.ok("/openapi.json")
        schemas = spec["components"]["schemas"]
        for path, ops in spec["paths"].items():
            if "get" in ops:  # the kit's operator routes (/v1/admin/...) included
                schema = ops["get"]["responses"]["200"]["content"]["application/json"]["schema"]
                resolved = schemas[schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema
                assert resolved.get("type") != "array", f"GET {path} answers a bare list"


class TestDocumentedStatuses:
    async def test_every_status_a_route_answers_is_in_its_openapi(self, api: FeedbackApi) -> None:
        spec = await api.ok("/openapi.json")
        survey = await api.survey()
        closed = await api.survey("closed-one", status="closed")
        stored = await api.respond(survey["id"], {"recommend": 9})
        await api.created("/v1/cases", {"response_id": stored["id"]})
        missing = "0196f3a2-6c1e-7cc0-9a1d-2b8f0e7d1a10"
        probes: list[tuple[str, str, str, dict[str, Any]]] = [
            (
                "post",
                "/v1/surveys",
                "/v1/surveys",
                {
                    "json": {
                        "key": "after-purchase",
                        "name": "x",
                        "kind": "nps",
                        "questions": [{"key": "r", "type": "nps", "text": {"en": "?"}}],
                    }
                },
            ),
            ("get", "/v1/surveys/{survey_id}", f"/v1/surveys/{missing}", {}),
            ("patch", "/v1/surveys/{survey_id}", f"/v1/surveys/{missing}", {"json": {"name": "y"}}),
            ("get", "/v1/surveys/{survey_id}/versions", f"/v1/surveys/{missing}/versions", {}),
            ("post", "/v1/responses", "/v1/responses", {"json": {"survey_id": closed["id"], "answers": {}}}),
            ("get", "/v1/responses/{response_id}", f"/v1/responses/{missing}", {}),
            (
                "post",
                "/v1/responses/import",
                "/v1/responses/import",
                {"content": b"x", "headers": {"Content-Type": "text/plain"}},
            ),
            ("get", "/v1/loop-rules/{rule_id}", f"/v1/loop-rules/{missing}", {}),
            ("patch", "/v1/loop-rules/{rule_id}", f"/v1/loop-rules/{missing}", {"json": {"name": "y"}}),
            ("delete", "/v1/loop-rules/{rule_id}", f"/v1/loop-rules/{missing}", {}),
            ("post", "/v1/cases", "/v1/cases", {"json": {"response_id": stored["id"]}}),
            ("get", "/v1/cases/{case_id}", f"/v1/cases/{missing}", {}),
            ("patch", "/v1/cases/{case_id}", f"/v1/cases/{missing}", {"json": {"assignee": "y"}}),
            ("post", "/v1/cases/{case_id}/notes", f"/v1/cases/{missing}/notes", {"json": {"text": "y"}}),
            ("delete", "/v1/opt-outs/{customer}", "/v1/opt-outs/nobody", {}),
        ]
        undocumented = []
        for method, template, url, kw in probes:
            response = await api.request(method.upper(), url, **kw)
            assert response.status_code >= 400, (url, response.text)
            if str(response.status_code) not in spec["paths"][template][method]["responses"]:
                undocumented.append(f"{method.upper()} {template}: {response.status_code}")
        assert not undocumented
