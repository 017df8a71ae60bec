"""Changes and deletes through mutations, end to end: the services and the gateway as processes of their
own (`processes`), a real GraphQL client (gql). Each change reads back from the owning service's REST
API field by field; a removed step is gone from the unified view; the service's conflicts reach the
client typed; another workspace can change or delete nothing of this one."""

from __future__ import annotations

from typing import Any

import pytest
from gql.transport.exceptions import TransportQueryError

from tests.conftest import Keys, unique_name
from tests.gateway.answers import ask, same_fields
from tests.scoring.factories import SCOPES, SURVEY_QUESTIONS, Stack

PERSONA = "id key name role background needs goals pains priority rules version createdAt updatedAt"
UPDATE_PERSONA = f"""mutation($id: ID!, $input: UpdatePersonaInput!) {{
  updatePersona(id: $id, input: $input) {{ {PERSONA} }} }}"""
TOUCHPOINT = "id key name channel department yearlyCost currency description version createdAt updatedAt"
UPDATE_TOUCHPOINT = f"""mutation($id: ID!, $input: UpdateTouchpointInput!) {{
  updateTouchpoint(id: $id, input: $input) {{ {TOUCHPOINT} }} }}"""
MAP = (
    "journey { stages { id key name position steps { id position momentOfTruth expectedEmotion touchpoint { key } } } }"
)
UPDATE_STAGE = f"""mutation($journey: ID!, $id: ID!, $input: UpdateStageInput!) {{
  updateStage(journeyId: $journey, id: $id, input: $input) {{ id {MAP} }} }}"""
UPDATE_STEP = f"""mutation($journey: ID!, $id: ID!, $input: UpdateStepInput!) {{
  updateStep(journeyId: $journey, id: $id, input: $input) {{ id {MAP} }} }}"""
SURVEY = (
    "id key name kind status defaultLanguage version revision questions { key type required text options { key text } }"
)
UPDATE_SURVEY = f"""mutation($id: ID!, $input: UpdateSurveyInput!) {{
  updateSurvey(id: $id, input: $input) {{ {SURVEY} }} }}"""
DELETE_PERSONA = "mutation($id: ID!) { deletePersona(id: $id) { id } }"
DELETE_TOUCHPOINT = "mutation($id: ID!) { deleteTouchpoint(id: $id) { id } }"
DELETE_JOURNEY = "mutation($id: ID!) { deleteJourney(id: $id) { id } }"
REMOVE_STAGE = "mutation($journey: ID!, $id: ID!) { removeStage(journeyId: $journey, id: $id) { id } }"
REMOVE_STEP = "mutation($journey: ID!, $id: ID!) { removeStep(journeyId: $journey, id: $id) { id } }"
VIEW = """query($key: String!) { journey(key: $key) {
  id stages { key position steps { id position touchpoint { key } } } } }"""
# A touchpoint renamed after an earlier field of the document read its journey: the rename reads it again.
RENAME_AFTER_A_READ = """mutation($journey: ID!, $touchpoint: ID!) {
  before: updateJourney(id: $journey, input: {}) { stages { steps { touchpoint { name } } } }
  renamed: updateTouchpoint(id: $touchpoint, input: {name: "Web shop"}) {
    journeys { stages { steps { touchpoint { name } } } } } }"""


async def _refused(url: str, headers: dict[str, str], document: str, **variables: Any) -> dict[str, Any]:
    """The one error of a mutation that must fail."""
    with pytest.raises(TransportQueryError) as raised:
        await ask(url, headers, document, **variables)
    [error] = raised.value.errors or []
    assert isinstance(error, dict)
    return error


async def _rest(stack: Stack, service: str, method: str, path: str, status: int = 200, **kw: Any) -> Any:
    client = stack.journey if service == "journey" else stack.feedback
    response = await client.request(method, path, headers=stack.headers, **kw)
    assert response.status_code == status, response.text
    return response.json()


async def _persona(stack: Stack, key: str = "renter") -> dict[str, Any]:
    body = {"key": key, "name": "Renter", "role": "Tenant, 34", "background": "Rents", "needs": ["calm"],
            "goals": ["save"], "pains": ["forms"], "priority": 20}  # fmt: skip
    return await _rest(stack, "journey", "POST", "/v1/personas", 201, json=body)  # type: ignore[no-any-return]


async def _journey(stack: Stack, key: str) -> dict[str, Any]:
    """need: ad; buy: shop (a moment of truth), mail; use: empty. Ids of its stages and steps by key."""
    journey, touchpoints = await stack.build_journey(
        key, [("ad", "need", None, False), ("shop", "buy", "20000.00", True), ("mail", "buy", None, False)]
    )
    stages = (await _rest(stack, "journey", "GET", f"/v1/journeys/{journey['id']}/stages"))["items"]
    return {
        "journey": journey,
        "touchpoints": touchpoints,
        "stages": {s["key"]: s["id"] for s in stages},
        "steps": await _steps_by_touchpoint(stack, journey["id"], touchpoints),
    }


async def _steps_by_touchpoint(
    stack: Stack, journey_id: str, touchpoints: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    keys = {t["id"]: k for k, t in touchpoints.items()}
    steps = await _rest(stack, "journey", "GET", "/v1/steps", params={"journey_id": journey_id})
    return {keys[s["touchpoint_id"]]: s for s in steps["items"]}


class TestChangesReadBack:
    async def test_a_persona_and_a_touchpoint_changed_read_back_field_by_field(
        self, processes: dict[str, str], stack: Stack
    ) -> None:
        url, headers = processes["gateway"], stack.headers
        persona = await _persona(stack)
        rules = [{"name": "young", "when": {"attribute": "age", "op": "lt", "value": 30}}]
        changes = {"name": "Saver", "role": None, "needs": ["low price"], "pains": [], "priority": 7, "rules": rules}
        changed = (await ask(url, headers, UPDATE_PERSONA, id=persona["id"], input=changes))["updatePersona"]
        rest = await _rest(stack, "journey", "GET", f"/v1/personas/{persona['id']}")
        assert [rest[k] for k in ("key", "name", "role", "background", "needs", "goals", "pains", "priority")] == [
            "renter", "Saver", None, "Rents", ["low price"], ["save"], [], 7
        ]  # fmt: skip
        assert (rest["rules"], rest["version"]) == (rules, persona["version"] + 1)
        same_fields(changed, rest)

        built = await _journey(stack, "shop-journey")
        shop = built["touchpoints"]["shop"]
        changes = {"channel": "email", "department": "Sales", "yearlyCost": "99000.50", "description": "Online"}
        changed = (await ask(url, headers, UPDATE_TOUCHPOINT, id=shop["id"], input=changes))["updateTouchpoint"]
        rest = await _rest(stack, "journey", "GET", f"/v1/touchpoints/{shop['id']}")
        fields = ("key", "name", "channel", "department", "yearly_cost", "currency", "description")
        assert [rest[k] for k in fields] == [
            "shop", "shop", "email", "Sales", "99000.50", "EUR", "Online"
        ]  # fmt: skip
        assert rest["version"] == shop["version"] + 1
        same_fields(changed, rest)
        cleared = await ask(url, headers, UPDATE_TOUCHPOINT, id=shop["id"], input={"department": None})
        assert cleared["updateTouchpoint"]["department"] is None
        assert (await _rest(stack, "journey", "GET", f"/v1/touchpoints/{shop['id']}"))["department"] is None

        # the journey's map carries its touchpoints: read earlier in the document, it is read again
        answer = await ask(url, headers, RENAME_AFTER_A_READ, journey=built["journey"]["id"], touchpoint=shop["id"])
        names = [[st["touchpoint"]["name"] for st in s["steps"]] for s in answer["before"]["stages"]]
        assert names == [["ad"], ["shop", "mail"], []]
        [journey] = answer["renamed"]["journeys"]
        assert [[st["touchpoint"]["name"] for st in s["steps"]] for s in journey["stages"]] == [
            ["ad"], ["Web shop", "mail"], []
        ]  # fmt: skip

    async def test_stages_and_steps_changed_read_back_field_by_field(
        self, processes: dict[str, str], stack: Stack
    ) -> None:
        url, headers = processes["gateway"], stack.headers
        built = await _journey(stack, "moves")
        journey_id, stages, steps = built["journey"]["id"], built["stages"], built["steps"]
        moved = await ask(url, headers, UPDATE_STAGE, journey=journey_id, id=stages["use"],
                          input={"key": "usage", "name": "Usage", "position": 0})  # fmt: skip
        assert moved["updateStage"]["id"] == stages["use"]
        answered = [(s["id"], s["key"], s["name"], s["position"]) for s in moved["updateStage"]["journey"]["stages"]]
        rest = (await _rest(stack, "journey", "GET", f"/v1/journeys/{journey_id}/stages"))["items"]
        assert answered == [(s["id"], s["key"], s["name"], s["position"]) for s in rest] == [
            (stages["use"], "usage", "Usage", 0), (stages["need"], "need", "Need", 1), (stages["buy"], "buy", "Buy", 2)
        ]  # fmt: skip

        changes = {"stageId": stages["use"], "position": 0, "momentOfTruth": True, "expectedEmotion": -2}
        placed = await ask(url, headers, UPDATE_STEP, journey=journey_id, id=steps["mail"]["id"], input=changes)
        assert placed["updateStep"]["id"] == steps["mail"]["id"]
        after = await _steps_by_touchpoint(stack, journey_id, built["touchpoints"])
        mail = after["mail"]
        assert (mail["stage_id"], mail["position"], mail["moment_of_truth"], mail["expected_emotion"]) == (
            stages["use"], 0, True, -2
        )  # fmt: skip
        assert (after["shop"]["stage_id"], after["shop"]["position"]) == (stages["buy"], 0)  # the gap closed
        by_stage = {s["key"]: s["steps"] for s in placed["updateStep"]["journey"]["stages"]}
        assert [(st["touchpoint"]["key"], st["momentOfTruth"], st["expectedEmotion"]) for st in by_stage["usage"]] == [
            ("mail", True, -2)
        ]
        assert [(st["id"], st["position"]) for st in by_stage["buy"]] == [(after["shop"]["id"], 0)]

    async def test_a_survey_changed_reads_back_and_new_questions_after_answers_are_a_new_version(
        self, processes: dict[str, str], stack: Stack
    ) -> None:
        url, headers = processes["gateway"], stack.headers
        survey = await stack.survey()
        changed = await ask(
            url, headers, UPDATE_SURVEY, id=survey["id"], input={"name": "Ride", "defaultLanguage": "de"}
        )
        rest = await _rest(stack, "feedback", "GET", f"/v1/surveys/{survey['id']}")
        assert [rest[k] for k in ("name", "default_language", "status", "version", "revision")] == [
            "Ride", "de", "active", 1, survey["revision"] + 1
        ]  # fmt: skip
        same_fields(changed["updateSurvey"], rest)

        answered = {"survey_id": survey["id"], "answers": {"recommend": 9}}
        response = await _rest(stack, "feedback", "POST", "/v1/responses", 201, json=answered)
        questions = [{"key": "recommend", "type": "nps", "text": {"en": "Recommend us?", "de": "Empfehlen?"}}]
        changed = await ask(url, headers, UPDATE_SURVEY, id=survey["id"], input={"questions": questions})
        rest = await _rest(stack, "feedback", "GET", f"/v1/surveys/{survey['id']}")
        assert (rest["version"], [(q["key"], q["text"]) for q in rest["questions"]]) == (
            2, [("recommend", {"en": "Recommend us?", "de": "Empfehlen?"})]
        )  # fmt: skip
        same_fields(changed["updateSurvey"], rest)
        versions = await _rest(stack, "feedback", "GET", f"/v1/surveys/{survey['id']}/versions")
        assert [len(v["questions"]) for v in versions["items"]] == [len(SURVEY_QUESTIONS), 1]
        kept = await _rest(stack, "feedback", "GET", f"/v1/responses/{response['id']}")
        assert kept["survey_version"] == 1


class TestDeletes:
    async def test_what_is_deleted_is_gone_from_the_services_and_the_unified_view(
        self, processes: dict[str, str], stack: Stack
    ) -> None:
        url, headers = processes["gateway"], stack.headers
        built = await _journey(stack, "to-go")
        journey_id, stages, steps = built["journey"]["id"], built["stages"], built["steps"]
        view = (await ask(url, headers, VIEW, key="to-go"))["journey"]
        assert [st["id"] for st in view["stages"][0]["steps"]] == [steps["ad"]["id"]]

        removed = await ask(url, headers, REMOVE_STEP, journey=journey_id, id=steps["ad"]["id"])
        assert removed["removeStep"] == {"id": steps["ad"]["id"]}
        left = await _steps_by_touchpoint(stack, journey_id, built["touchpoints"])
        assert sorted(left) == ["mail", "shop"]
        view = (await ask(url, headers, VIEW, key="to-go"))["journey"]
        assert [(s["key"], [st["touchpoint"]["key"] for st in s["steps"]]) for s in view["stages"]] == [
            ("need", []), ("buy", ["shop", "mail"]), ("use", [])
        ]  # fmt: skip

        assert (await ask(url, headers, REMOVE_STAGE, journey=journey_id, id=stages["need"]))["removeStage"] == {
            "id": stages["need"]
        }
        rest = (await _rest(stack, "journey", "GET", f"/v1/journeys/{journey_id}/stages"))["items"]
        assert [(s["key"], s["position"]) for s in rest] == [("buy", 0), ("use", 1)]

        ad = built["touchpoints"]["ad"]["id"]
        assert (await ask(url, headers, DELETE_TOUCHPOINT, id=ad))["deleteTouchpoint"] == {"id": ad}
        await _rest(stack, "journey", "GET", f"/v1/touchpoints/{ad}", 404)

        assert (await ask(url, headers, DELETE_JOURNEY, id=journey_id))["deleteJourney"] == {"id": journey_id}
        await _rest(stack, "journey", "GET", f"/v1/journeys/{journey_id}", 404)
        assert (await _rest(stack, "journey", "GET", "/v1/steps", params={"journey_id": journey_id}))["items"] == []
        assert (await ask(url, headers, VIEW, key="to-go"))["journey"] is None

        persona = await _persona(stack)
        assert (await ask(url, headers, DELETE_PERSONA, id=persona["id"]))["deletePersona"] == {"id": persona["id"]}
        await _rest(stack, "journey", "GET", f"/v1/personas/{persona['id']}", 404)
        again = await _refused(url, headers, DELETE_PERSONA, id=persona["id"])  # sent again: nothing is left
        assert (again["path"], again["extensions"]["service"], again["extensions"]["status"]) == (
            ["deletePersona"], "journey", 404
        )  # fmt: skip


class TestConflicts:
    async def test_what_is_still_used_is_the_services_409_naming_its_users_and_stays(
        self, processes: dict[str, str], stack: Stack
    ) -> None:
        url, headers = processes["gateway"], stack.headers
        built = await _journey(stack, "in-use")
        journey_id, stages, steps = built["journey"]["id"], built["stages"], built["steps"]
        persona = await _persona(stack)
        await _rest(stack, "journey", "PATCH", f"/v1/journeys/{journey_id}", json={"persona_id": persona["id"]})

        error = await _refused(url, headers, REMOVE_STAGE, journey=journey_id, id=stages["buy"])
        assert (error["extensions"]["code"], error["extensions"]["status"]) == ("SERVICE_ERROR", 409)
        assert sorted(error["extensions"]["problem"]["steps"]) == sorted([steps["shop"]["id"], steps["mail"]["id"]])
        assert (
            error["message"]
            == "The journey service answered: Stage 'buy' still holds 2 step(s); move or remove them first."
        )

        error = await _refused(url, headers, DELETE_TOUCHPOINT, id=built["touchpoints"]["shop"]["id"])
        assert error["extensions"]["status"] == 409
        assert error["extensions"]["problem"]["steps"] == [
            {"step_id": steps["shop"]["id"], "journey": "in-use", "stage": "buy"}
        ]
        error = await _refused(url, headers, DELETE_PERSONA, id=persona["id"])
        assert (error["extensions"]["status"], error["extensions"]["problem"]["journeys"]) == (409, ["in-use"])
        other = await _persona(stack, "other")
        error = await _refused(url, headers, UPDATE_PERSONA, id=other["id"], input={"key": "renter"})
        assert error["extensions"]["status"] == 409
        assert (
            error["extensions"]["problem"]["detail"] == "A persona with key 'renter' already exists in this workspace."
        )

        stages_now = (await _rest(stack, "journey", "GET", f"/v1/journeys/{journey_id}/stages"))["items"]
        assert [s["key"] for s in stages_now] == ["need", "buy", "use"]
        assert await _steps_by_touchpoint(stack, journey_id, built["touchpoints"]) == steps
        assert await _rest(stack, "journey", "GET", f"/v1/personas/{persona['id']}") == persona
        assert (await _rest(stack, "journey", "GET", f"/v1/personas/{other['id']}"))["key"] == "other"

    async def test_a_bad_value_is_a_422_naming_the_field_and_a_non_id_is_refused_before_any_call(
        self, processes: dict[str, str], stack: Stack
    ) -> None:
        url, headers = processes["gateway"], stack.headers
        survey = await stack.survey()
        error = await _refused(url, headers, UPDATE_SURVEY, id=survey["id"], input={"status": "draft"})
        assert (error["extensions"]["service"], error["extensions"]["status"]) == ("feedback", 422)
        assert [e["field"] for e in error["extensions"]["problem"]["errors"]] == ["status"]
        built = await _journey(stack, "bad-values")
        error = await _refused(url, headers, UPDATE_STEP, journey=built["journey"]["id"],
                               id=built["steps"]["ad"]["id"], input={"expectedEmotion": 3})  # fmt: skip
        assert error["extensions"]["status"] == 422
        assert [e["field"] for e in error["extensions"]["problem"]["errors"]] == ["body.expected_emotion"]
        error = await _refused(url, headers, REMOVE_STEP, journey=built["journey"]["id"], id="../stages")
        assert error["message"] == "'../stages' is not a step id (a UUID)."
        assert (await _rest(stack, "feedback", "GET", f"/v1/surveys/{survey['id']}"))["status"] == "active"


class TestTenantIsolation:
    async def test_another_workspace_can_change_or_delete_nothing_of_this_one(
        self, processes: dict[str, str], stack: Stack, keys: Keys
    ) -> None:
        url = processes["gateway"]
        other = keys.headers(unique_name("gw-other"), SCOPES)
        built = await _journey(stack, "ours")
        journey_id, stages, steps = built["journey"]["id"], built["stages"], built["steps"]
        persona, survey = await _persona(stack), await stack.survey()
        shop = built["touchpoints"]["shop"]["id"]
        journey = await _rest(stack, "journey", "GET", f"/v1/journeys/{journey_id}")
        theirs = await ask(url, other, 'mutation { createJourney(input: {key: "ours", name: "Theirs"}) { id } }')
        attempts: list[tuple[str, str, dict[str, Any]]] = [
            (UPDATE_PERSONA, "journey", {"id": persona["id"], "input": {"name": "Taken"}}),
            (DELETE_PERSONA, "journey", {"id": persona["id"]}),
            (UPDATE_TOUCHPOINT, "journey", {"id": shop, "input": {"name": "Taken"}}),
            (DELETE_TOUCHPOINT, "journey", {"id": built["touchpoints"]["ad"]["id"]}),
            (UPDATE_STAGE, "journey", {"journey": journey_id, "id": stages["use"], "input": {"name": "Taken"}}),
            (REMOVE_STAGE, "journey", {"journey": journey_id, "id": stages["use"]}),
            (UPDATE_STEP, "journey", {"journey": journey_id, "id": steps["ad"]["id"], "input": {"position": 1}}),
            (REMOVE_STEP, "journey", {"journey": journey_id, "id": steps["ad"]["id"]}),
            # their own journey's id with our stage or step: still not theirs
            (REMOVE_STAGE, "journey", {"journey": theirs["createJourney"]["id"], "id": stages["use"]}),
            (REMOVE_STEP, "journey", {"journey": theirs["createJourney"]["id"], "id": steps["ad"]["id"]}),
            (DELETE_JOURNEY, "journey", {"id": journey_id}),
            (UPDATE_SURVEY, "feedback", {"id": survey["id"], "input": {"name": "Taken"}}),
        ]
        for document, service, variables in attempts:
            error = await _refused(url, other, document, **variables)
            assert (error["extensions"]["service"], error["extensions"]["status"]) == (service, 404), document

        assert await _rest(stack, "journey", "GET", f"/v1/personas/{persona['id']}") == persona
        for key, touchpoint in built["touchpoints"].items():
            assert await _rest(stack, "journey", "GET", f"/v1/touchpoints/{touchpoint['id']}") == touchpoint, key
        assert await _rest(stack, "journey", "GET", f"/v1/journeys/{journey_id}") == journey
        rest = (await _rest(stack, "journey", "GET", f"/v1/journeys/{journey_id}/stages"))["items"]
        assert [(s["id"], s["name"]) for s in rest] == [(stages[k], k.title()) for k in ("need", "buy", "use")]
        assert await _steps_by_touchpoint(stack, journey_id, built["touchpoints"]) == steps
        assert await _rest(stack, "feedback", "GET", f"/v1/surveys/{survey['id']}") == survey
