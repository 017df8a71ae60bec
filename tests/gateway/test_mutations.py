"""Mutations end to end: the services and the gateway as processes of their own (`processes`), a real
GraphQL client (gql). A journey modelled through mutations only, fed through the services' REST APIs,
read back through the gateway and checked against what the services answer directly; retries under
one idempotency key (given or derived) store one row; a service's problem reaches the client typed;
another workspace can change nothing of this one."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport

from tests.conftest import Keys, unique_name
from tests.eventually import eventually
from tests.scoring.factories import SCOPES, SURVEY_QUESTIONS, Stack

PERSONA = """mutation($input: CreatePersonaInput!, $key: String) {
  createPersona(input: $input, idempotencyKey: $key) { id key name needs priority } }"""
TOUCHPOINT = """mutation($input: CreateTouchpointInput!, $key: String) {
  createTouchpoint(input: $input, idempotencyKey: $key) { id key name channel } }"""
JOURNEY = """mutation($input: CreateJourneyInput!) {
  createJourney(input: $input) { id key name status stages { id key position } } }"""
UPDATE_JOURNEY = """mutation($id: ID!, $input: UpdateJourneyInput!) {
  updateJourney(id: $id, input: $input) { id name status stages { key } } }"""
STAGE = """mutation($journey: ID!, $input: StageInput!) {
  addStage(journeyId: $journey, input: $input) { id journey { stages { id key position } } } }"""
STEP = """mutation($journey: ID!, $input: AddStepInput!, $key: String) {
  addStep(journeyId: $journey, input: $input, idempotencyKey: $key) {
    id journey { stages { key steps { id position momentOfTruth touchpoint { key } } } } } }"""
TWO_STEPS = """mutation($journey: ID!, $first: AddStepInput!, $second: AddStepInput!) {
  a: addStep(journeyId: $journey, input: $first) { journey { stages { steps { touchpoint { key } } } } }
  b: addStep(journeyId: $journey, input: $second) { journey { stages { steps { touchpoint { key } } } } } }"""
SURVEY = """mutation($input: CreateSurveyInput!) { createSurvey(input: $input) { id key kind status version } }"""
RESPONSE = """mutation($input: SubmitResponseInput!, $key: String) {
  submitResponse(input: $input, idempotencyKey: $key) {
    id surveyId journeyKey touchpointKey submittedAt nps npsCategory csat ces } }"""
CASE = """mutation($id: ID!, $input: UpdateCaseInput!) {
  updateCase(id: $id, input: $input) { id status assignee dueAt version } }"""
VIEW = """
query View($key: String!) {
  journey(key: $key) {
    id key name status
    stages { key position steps { momentOfTruth touchpoint { id key }
      score { reach reachN relevance relevanceLow relevanceHigh quadrant painPoint }
      nps { value low high n } csat { value low high n } ces { value low high n } } }
    health { score low high n }
  }
}
"""
SCORE_FIELDS = [("reach", "reach"), ("reachN", "reach_n"), ("relevance", "relevance"), ("quadrant", "quadrant"),
                ("relevanceLow", "relevance_low"), ("relevanceHigh", "relevance_high")]  # fmt: skip
BASE = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
CUSTOMERS = 60


async def _ask(url: str, headers: dict[str, str], document: str, **variables: Any) -> dict[str, Any]:
    transport = HTTPXAsyncTransport(url=f"{url}/graphql", headers=headers, timeout=30)
    async with Client(transport=transport) as session:
        result: dict[str, Any] = await session.execute(GraphQLRequest(document, variable_values=variables))
        return result


async def _refused(url: str, headers: dict[str, str], document: str, **variables: Any) -> dict[str, Any]:
    """The one error of a mutation that must fail."""
    with pytest.raises(TransportQueryError) as raised:
        await _ask(url, headers, document, **variables)
    [error] = raised.value.errors or []
    assert isinstance(error, dict)
    return error


def _at(minutes: float) -> str:
    return (BASE + timedelta(minutes=minutes)).isoformat()


async def _model(url: str, headers: dict[str, str], key: str) -> dict[str, Any]:
    """A persona, three touchpoints and a journey of four stages with three steps, through mutations only."""
    persona = await _ask(url, headers, PERSONA, input={"key": "commuter", "name": "Commuter", "needs": ["speed"]})
    touchpoints = {}
    for tp, channel, cost in (("ad", "social", "50000.00"), ("shop", "web", "20000.00"), ("support", "phone", "8.50")):
        body: dict[str, Any] = {"key": tp, "name": tp.title(), "channel": channel, "yearlyCost": cost}
        touchpoints[tp] = (await _ask(url, headers, TOUCHPOINT, input=body))["createTouchpoint"]
    journey = await _ask(
        url,
        headers,
        JOURNEY,
        input={"key": key, "name": "Ride to work", "status": "active", "personaId": persona["createPersona"]["id"]},
    )
    journey = journey["createJourney"]
    added = await _ask(url, headers, STAGE, journey=journey["id"], input={"key": "advocate", "name": "Advocate"})
    stages = {s["key"]: s["id"] for s in added["addStage"]["journey"]["stages"]}
    view = None
    for tp, stage, mot in (("ad", "need", False), ("shop", "buy", True), ("support", "use", False)):
        body = {"stageId": stages[stage], "touchpointId": touchpoints[tp]["id"], "momentOfTruth": mot}
        view = (await _ask(url, headers, STEP, journey=journey["id"], input=body))["addStep"]
    return {
        "persona": persona["createPersona"],
        "touchpoints": touchpoints,
        "journey": journey,
        "added": added,
        "last_step": view,
    }


class TestModelThroughMutations:
    async def test_a_journey_built_by_mutations_reads_back_as_the_services_answer(
        self, processes: dict[str, str], stack: Stack
    ) -> None:
        url, headers = processes["gateway"], stack.headers
        built = await _model(url, headers, "ride-to-work")
        journey = built["journey"]
        assert [(s["key"], s["position"]) for s in journey["stages"]] == [("need", 0), ("buy", 1), ("use", 2)]
        assert [(s["key"], s["position"]) for s in built["added"]["addStage"]["journey"]["stages"]][-1] == (
            "advocate",
            3,
        )
        assert built["added"]["addStage"]["id"] in {s["id"] for s in built["added"]["addStage"]["journey"]["stages"]}
        # what the journey service holds is what the mutations asked for
        journey_map = (await stack.journey.get(f"/v1/journeys/{journey['id']}/map", headers=headers)).json()
        assert journey_map["persona"]["id"] == built["persona"]["id"]
        assert journey_map["journey"]["status"] == "active"
        rest_steps = {
            s["key"]: [(st["touchpoint"]["key"], st["moment_of_truth"]) for st in s["steps"]]
            for s in journey_map["stages"]
        }
        assert rest_steps == {
            "need": [("ad", False)],
            "buy": [("shop", True)],
            "use": [("support", False)],
            "advocate": [],
        }
        answered = {
            s["key"]: [st["touchpoint"]["key"] for st in s["steps"]] for s in built["last_step"]["journey"]["stages"]
        }
        assert answered == {k: [tp for tp, _ in v] for k, v in rest_steps.items()}
        tp = await stack.journey.get(f"/v1/touchpoints/{built['touchpoints']['support']['id']}", headers=headers)
        assert tp.json()["yearly_cost"] == "8.50"
        # a survey through a mutation; the answers through REST, one more through a mutation
        questions = [{"key": q["key"], "type": q["type"], "text": q["text"]} for q in SURVEY_QUESTIONS]
        survey = await _ask(
            url,
            headers,
            SURVEY,
            input={"key": "ride-survey", "name": "Ride", "kind": "nps", "status": "active", "questions": questions},
        )
        survey = survey["createSurvey"]
        assert (survey["kind"], survey["status"], survey["version"]) == ("nps", "active", 1)
        touches, outcomes, answers = [], [], []
        for i in range(CUSTOMERS):
            c = f"c{i:03d}"
            met = ["ad"] + (["shop"] if i % 3 else []) + (["support"] if i % 4 == 0 else [])
            touches += [
                {"event_id": f"{c}-{tp}", "customer": c, "touchpoint": tp, "occurred_at": _at(i + k)}
                for k, tp in enumerate(met)
            ]
            if "shop" in met and i % 2 == 0:
                outcomes.append({"event_id": f"{c}-buy", "customer": c, "name": "purchase", "occurred_at": _at(i + 3)})
            base = {"survey_id": survey["id"], "customer_external_id": c, "journey_key": "ride-to-work"}
            answers.append({**base, "submitted_at": _at(i + 4), "answers": {"recommend": 9 if "shop" in met else 4}})
            answers.append(
                {
                    **base,
                    "touchpoint_key": met[-1],
                    "submitted_at": _at(i + 5),
                    "answers": {"satisfied": 5 if met[-1] == "shop" else 2, "effort": 2 + i % 4},
                }
            )
        await stack.interactions(touches)
        await stack.outcomes(outcomes)
        await stack.responses(answers)
        submitted = await _ask(
            url,
            headers,
            RESPONSE,
            input={
                "surveyId": survey["id"],
                "customerExternalId": "c000",
                "journeyKey": "ride-to-work",
                "touchpointKey": "support",
                "submittedAt": _at(70),
                "answers": {"satisfied": 1, "effort": 7},
            },
        )
        assert submitted["submitResponse"]["csat"] == 1
        assert submitted["submitResponse"]["ces"] == 7
        await stack.scores(
            journey["id"],
            customers=CUSTOMERS,
            interactions=len(touches),
            responses=len(answers) + 1,
            conversions=len(outcomes),
        )

        view = (await _ask(url, headers, VIEW, key="ride-to-work"))["journey"]
        scores = (await stack.scoring_get(f"/v1/journeys/{journey['id']}/scores")).json()
        by_tp = {t["touchpoint_id"]: t for t in scores["touchpoints"]}
        assert [s["key"] for s in view["stages"]] == ["need", "buy", "use", "advocate"]
        steps = [st for s in view["stages"] for st in s["steps"]]
        assert [st["touchpoint"]["key"] for st in steps] == ["ad", "shop", "support"]
        for step in steps:
            expected, got = by_tp[step["touchpoint"]["id"]], step["score"]
            assert [got[field] for field, _ in SCORE_FIELDS] == [expected[name] for _, name in SCORE_FIELDS]
            assert got["painPoint"] == expected["pain_point"]["pain_point"]
            for metric in ("nps", "csat", "ces"):
                params = {"journey": "ride-to-work", "touchpoint": step["touchpoint"]["key"]}
                answer = await stack.feedback.get(f"/v1/metrics/{metric}", headers=headers, params=params)
                overall = answer.json()["overall"]
                rest = [overall[k] for k in ("value", "interval_low", "interval_high", "n")]
                assert [step[metric][k] for k in ("value", "low", "high", "n")] == rest, metric
        # every customer rated the last touchpoint met, c000 the support once more through the mutation
        rated = Counter(a["touchpoint_key"] for a in answers if "touchpoint_key" in a) + Counter(["support"])
        assert [st["csat"]["n"] for st in steps] == [rated["ad"], rated["shop"], rated["support"]] == [15, 30, 16]
        assert by_tp[built["touchpoints"]["ad"]["id"]]["reach_n"] > 0
        health = scores["health"]
        assert [view["health"][k] for k in ("score", "low", "high", "n")] == [
            health[k] for k in ("score", "low", "high", "n")
        ]

    async def test_a_journey_changed_reads_back_changed(self, processes: dict[str, str], stack: Stack) -> None:
        url, headers = processes["gateway"], stack.headers
        journey = (await _ask(url, headers, JOURNEY, input={"key": "ride", "name": "Ride"}))["createJourney"]
        assert journey["status"] == "draft"  # the service's default: the gateway sent no status
        changed = await _ask(
            url, headers, UPDATE_JOURNEY, id=journey["id"], input={"name": "Ride on", "status": "active"}
        )
        assert changed["updateJourney"] == {
            "id": journey["id"],
            "name": "Ride on",
            "status": "active",
            "stages": [{"key": "need"}, {"key": "buy"}, {"key": "use"}],
        }
        rest = (await stack.journey.get(f"/v1/journeys/{journey['id']}", headers=headers)).json()
        assert (rest["name"], rest["status"], rest["version"]) == ("Ride on", "active", 2)

    async def test_a_later_mutation_of_one_document_reads_the_journey_again(
        self, processes: dict[str, str], stack: Stack
    ) -> None:
        url, headers = processes["gateway"], stack.headers
        journey = (await _ask(url, headers, JOURNEY, input={"key": "twice", "name": "Twice"}))["createJourney"]
        made = [
            (await _ask(url, headers, TOUCHPOINT, input={"key": k, "name": k, "channel": "web"}))["createTouchpoint"]
            for k in ("first", "second")
        ]
        need = journey["stages"][0]["id"]
        both = await _ask(url, headers, TWO_STEPS, journey=journey["id"],
                          first={"stageId": need, "touchpointId": made[0]["id"]},
                          second={"stageId": need, "touchpointId": made[1]["id"]})  # fmt: skip
        placed = {alias: [st["touchpoint"]["key"] for st in both[alias]["journey"]["stages"][0]["steps"]]
                  for alias in ("a", "b")}  # fmt: skip
        assert placed == {"a": ["first"], "b": ["first", "second"]}


class TestIdempotency:
    async def test_a_create_sent_again_is_one_row_with_a_given_or_a_derived_key(
        self, processes: dict[str, str], stack: Stack
    ) -> None:
        url, headers = processes["gateway"], stack.headers
        body = {"key": "hotline", "name": "Hotline", "channel": "phone"}
        first = await _ask(url, headers, TOUCHPOINT, input=body, key="retry-1")
        again = await _ask(url, headers, TOUCHPOINT, input=body, key="retry-1")
        assert again == first
        persona = {"key": "saver", "name": "Saver", "priority": 5}
        derived = await _ask(url, headers, PERSONA, input=persona)
        assert await _ask(url, headers, PERSONA, input=persona) == derived  # the derived key: a replay
        for path, key in (("/v1/touchpoints", "hotline"), ("/v1/personas", "saver")):
            listed = (await stack.journey.get(path, headers=headers, params={"key": key})).json()["items"]
            assert len(listed) == 1, path
        # what a replay saves the client from: the same input under a key of its own is a second create
        error = await _refused(url, headers, PERSONA, input=persona, key="a-second-saver")
        assert (error["extensions"]["service"], error["extensions"]["status"]) == ("journey", 409)

    async def test_a_step_sent_again_is_one_step(self, processes: dict[str, str], stack: Stack) -> None:
        url, headers = processes["gateway"], stack.headers
        built = await _model(url, headers, "steps-once")
        journey_id = built["journey"]["id"]
        stage = built["journey"]["stages"][2]["id"]
        body = {"stageId": stage, "touchpointId": built["touchpoints"]["ad"]["id"]}
        first = (await _ask(url, headers, STEP, journey=journey_id, input=body))["addStep"]
        assert (await _ask(url, headers, STEP, journey=journey_id, input=body))["addStep"]["id"] == first["id"]
        steps = (await stack.journey.get("/v1/steps", headers=headers, params={"journey_id": journey_id})).json()
        assert sorted(s["id"] for s in steps["items"] if s["stage_id"] == stage) == sorted(
            st["id"] for s in first["journey"]["stages"] if s["key"] == "use" for st in s["steps"]
        )
        assert len([s for s in steps["items"] if s["stage_id"] == stage]) == 2

    async def test_a_response_is_one_under_a_key_and_two_without(self, processes: dict[str, str], stack: Stack) -> None:
        url, headers = processes["gateway"], stack.headers
        survey = await stack.survey()
        body = {"surveyId": survey["id"], "customerExternalId": "kiosk", "answers": {"recommend": 10}}
        first = await _ask(url, headers, RESPONSE, input=body, key="answer-1")
        assert await _ask(url, headers, RESPONSE, input=body, key="answer-1") == first
        await _ask(url, headers, RESPONSE, input=body)
        await _ask(url, headers, RESPONSE, input=body)  # identical answers of another person: no key derived

        async def stored() -> list[dict[str, Any]]:
            page = await stack.feedback.get("/v1/responses", headers=headers, params={"survey_id": survey["id"]})
            return page.json()["items"]  # type: ignore[no-any-return]

        assert len(await stored()) == 3

    async def test_a_key_sent_again_with_other_input_is_the_services_conflict(
        self, processes: dict[str, str], stack: Stack
    ) -> None:
        url, headers = processes["gateway"], stack.headers
        await _ask(url, headers, TOUCHPOINT, input={"key": "mail", "name": "Mail", "channel": "email"}, key="k-1")
        error = await _refused(
            url, headers, TOUCHPOINT, input={"key": "mail", "name": "Post", "channel": "print"}, key="k-1"
        )
        assert error["path"] == ["createTouchpoint"]
        extensions = error["extensions"]
        assert (extensions["code"], extensions["service"], extensions["status"]) == ("SERVICE_ERROR", "journey", 409)
        assert "Idempotency-Key 'k-1' was already used with a different request" in extensions["problem"]["detail"]
        listed = (await stack.journey.get("/v1/touchpoints", headers=headers, params={"key": "mail"})).json()
        assert [(t["name"], t["channel"]) for t in listed["items"]] == [("Mail", "email")]


class TestServiceProblems:
    async def test_a_step_at_an_unknown_touchpoint_is_the_services_422_with_its_field_errors(
        self, processes: dict[str, str], stack: Stack
    ) -> None:
        url, headers = processes["gateway"], stack.headers
        journey = (await _ask(url, headers, JOURNEY, input={"key": "bad-step", "name": "Bad"}))["createJourney"]
        unknown = "01900000-0000-7000-8000-000000000000"
        body = {"stageId": journey["stages"][0]["id"], "touchpointId": unknown}
        error = await _refused(url, headers, STEP, journey=journey["id"], input=body)
        assert error["message"] == (
            f"The journey service answered: no touchpoint {unknown} in this workspace's catalogue"
        )
        assert (error["extensions"]["status"], error["extensions"]["problem"]["errors"]) == (
            422,
            [{"field": "body.touchpoint_id", "message": f"no touchpoint {unknown} in this workspace's catalogue"}],
        )

    async def test_a_bad_key_is_a_422_naming_the_field(self, processes: dict[str, str], stack: Stack) -> None:
        error = await _refused(
            processes["gateway"], stack.headers, TOUCHPOINT, input={"key": "Not A Key", "name": "X", "channel": "web"}
        )
        assert error["extensions"]["status"] == 422
        assert [e["field"] for e in error["extensions"]["problem"]["errors"]] == ["body.key"]
        assert "Unexpected error" not in error["message"]

    async def test_an_unknown_journey_is_a_404_and_a_non_id_is_refused_before_any_call(
        self, processes: dict[str, str], stack: Stack
    ) -> None:
        url, headers = processes["gateway"], stack.headers
        stage = {"key": "x", "name": "X"}
        error = await _refused(url, headers, STAGE, journey="01900000-0000-7000-8000-000000000000", input=stage)
        assert (error["extensions"]["service"], error["extensions"]["status"]) == ("journey", 404)
        error = await _refused(url, headers, STAGE, journey="../personas", input=stage)
        assert error["message"] == "'../personas' is not a journey id (a UUID)."


class TestTenantIsolation:
    async def test_another_workspace_changes_nothing_of_this_one(
        self, processes: dict[str, str], stack: Stack, keys: Keys
    ) -> None:
        url, headers = processes["gateway"], stack.headers
        other = keys.headers(unique_name("gw-other"), SCOPES)
        journey = (await _ask(url, headers, JOURNEY, input={"key": "mine", "name": "Mine"}))["createJourney"]
        # the same input in the other workspace is a journey of its own, not a replay of this one's
        theirs = (await _ask(url, other, JOURNEY, input={"key": "mine", "name": "Mine"}))["createJourney"]
        assert theirs["id"] != journey["id"]
        error = await _refused(url, other, STAGE, journey=journey["id"], input={"key": "theirs", "name": "Theirs"})
        assert (error["extensions"]["service"], error["extensions"]["status"]) == ("journey", 404)
        stages = (await stack.journey.get(f"/v1/journeys/{journey['id']}/stages", headers=headers)).json()["items"]
        assert [s["key"] for s in stages] == ["need", "buy", "use"]

        # a detractor's answer opens a case (the default rule: NPS <= 6); it is moved here, not from there
        survey = await stack.survey()
        answered = await _ask(url, headers, RESPONSE, input={"surveyId": survey["id"], "answers": {"recommend": 2}})
        response_id = answered["submitResponse"]["id"]
        assert answered["submitResponse"]["npsCategory"] == "detractor"

        async def opened() -> dict[str, Any] | None:
            found = await stack.feedback.get(f"/v1/cases/{response_id}", headers=headers)
            return found.json() if found.status_code == 200 else None

        case = await eventually(opened, within=30)
        due = "2026-12-01T09:00:00+00:00"
        moved = await _ask(
            url, headers, CASE, id=case["id"], input={"status": "in_progress", "assignee": "ana", "dueAt": due}
        )
        assert moved["updateCase"] == {
            "id": case["id"],
            "status": "in_progress",
            "assignee": "ana",
            "dueAt": due,
            "version": case["version"] + 1,
        }
        error = await _refused(url, other, CASE, id=case["id"], input={"status": "closed", "assignee": None})
        assert (error["extensions"]["service"], error["extensions"]["status"]) == ("feedback", 404)
        after = (await stack.feedback.get(f"/v1/cases/{case['id']}", headers=headers)).json()
        assert (after["status"], after["assignee"], after["version"]) == ("in_progress", "ana", case["version"] + 1)
