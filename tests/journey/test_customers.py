from __future__ import annotations

from services.common.validation import FREEFORM_MAX_BYTES
from tests.journey.activity_factories import bulk, put_customer
from tests.journey.factories import JourneyApi

B2C = {"name": "b2c", "when": {"attribute": "segment", "op": "eq", "value": "b2c"}}
RICH = {"name": "rich", "when": {"attribute": "income", "op": "gte", "value": 100_000}}


class TestUpsertCustomer:
    async def test_put_creates_then_replaces(self, api: JourneyApi) -> None:
        created = await api.request("PUT", "/v1/customers/crm-1", json={"profile": {"segment": "b2b"}})
        assert created.status_code == 201, created.text
        replaced = await api.request(
            "PUT",
            "/v1/customers/crm-1",
            json={
                "profile": {"segment": "b2c"},
                "consents": [{"purpose": "marketing", "channel": "email", "granted": True}],
                "channel_preferences": ["email", "app"],
            },
        )
        assert replaced.status_code == 200, replaced.text
        body = replaced.json()
        assert body["id"] == created.json()["id"]
        assert body["profile"] == {"segment": "b2c"}
        assert body["consents"][0]["purpose"] == "marketing"
        assert body["consents"][0]["at"]
        assert body["channel_preferences"] == ["email", "app"]
        got = await api.get("/v1/customers/crm-1")
        assert got.json()["profile"] == {"segment": "b2c"}

    async def test_put_rejects_nul_in_profile(self, api: JourneyApi) -> None:
        response = await api.request("PUT", "/v1/customers/crm-1", json={"profile": {"a": "x\u0000y"}})
        assert response.status_code == 422

    async def test_profile_over_the_limit_is_422_alone_and_fails_its_item_in_bulk(self, api: JourneyApi) -> None:
        over = {"bio": "x" * FREEFORM_MAX_BYTES}
        response = await api.request("PUT", "/v1/customers/crm-1", json={"profile": over})
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "body.profile"
        result = await bulk(api, "customers", [{"external_id": "a", "profile": over}, {"external_id": "b"}])
        assert [(i["status"], i["errors"] and i["errors"][0]["field"]) for i in result["items"]] == [
            ("failed", "profile"),
            ("created", None),
        ]

    async def test_unknown_customer_is_404(self, api: JourneyApi) -> None:
        assert (await api.get("/v1/customers/nobody")).status_code == 404


class TestPersonaAssignment:
    async def test_assigns_first_matching_persona_by_priority(self, api: JourneyApi) -> None:
        await api.persona("premium", priority=1, rules=[RICH])
        family = await api.persona("family", priority=5, rules=[B2C])
        c = await put_customer(api, "c1", profile={"segment": "b2c", "income": 50_000})
        assert (c["persona_id"], c["persona_key"], c["persona_rule"]) == (family["id"], "family", "b2c")
        c = await put_customer(api, "c1", profile={"segment": "b2c", "income": 200_000})
        assert (c["persona_key"], c["persona_rule"]) == ("premium", "rich")

    async def test_no_match_is_no_persona(self, api: JourneyApi) -> None:
        await api.persona("family", rules=[B2C])
        c = await put_customer(api, "c1", profile={"segment": "b2b"})
        assert c["persona_id"] is None
        assert c["persona_rule"] is None
        listed = await api.get("/v1/customers", params={"without_persona": "true"})
        assert [x["external_id"] for x in listed.json()["items"]] == ["c1"]


class TestBulkCustomers:
    async def test_per_item_results(self, api: JourneyApi) -> None:
        await put_customer(api, "old")
        result = await bulk(
            api,
            "customers",
            [
                {"external_id": "old", "profile": {"segment": "b2c"}},
                {"external_id": "new"},
                {"external_id": "bad", "channel_preferences": ["fax"]},
                {"profile": {}},
            ],
        )
        assert result["counts"] == {"created": 1, "updated": 1, "stored": 0, "duplicate": 0, "conflict": 0, "failed": 2}
        statuses = [(r["key"], r["status"]) for r in result["items"]]
        assert statuses == [("old", "updated"), ("new", "created"), ("bad", "failed"), (None, "failed")]
        assert result["items"][2]["errors"][0]["field"].startswith("channel_preferences")

    async def test_same_external_id_twice_last_wins(self, api: JourneyApi) -> None:
        result = await bulk(
            api, "customers", [{"external_id": "x", "profile": {"v": 1}}, {"external_id": "x", "profile": {"v": 2}}]
        )
        assert result["items"][0]["id"] == result["items"][1]["id"]
        assert (await api.get("/v1/customers/x")).json()["profile"] == {"v": 2}


class TestCustomerIsolation:
    async def test_other_workspace_sees_nothing(self, api: JourneyApi) -> None:
        await put_customer(api, "c1", profile={"segment": "b2c"})
        other = api.other()
        assert (await other.get("/v1/customers/c1")).status_code == 404
        assert (await other.get("/v1/customers")).json()["items"] == []
        # the same external id in another workspace is another customer
        mine = await put_customer(other, "c1")
        assert mine["profile"] == {}
        assert (await api.get("/v1/customers/c1")).json()["profile"] == {"segment": "b2c"}


class TestBulkUnstorableText:
    async def test_nul_in_an_unknown_field_name_fails_the_item_not_the_request(self, api: JourneyApi) -> None:
        """The error names the field; a name a response cannot carry (NUL) must not break the request."""
        response = await api.post(
            "/v1/customers/bulk",
            content=b'{"items": [{"external_id": "ok-1"}, {"external_id": "bad", "\\ud83d\\ude00x\\u0000": 1}, [1]]}',
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert [i["status"] for i in body["items"]] == ["created", "failed", "failed"]


class TestHugeIntegers:
    async def test_integer_beyond_64_bits_is_422_not_500(self, api: JourneyApi) -> None:
        response = await api.request("PUT", "/v1/customers/crm-big", json={"profile": {"n": {"m": 2**70}}})
        assert response.status_code == 422, response.text
        assert (await api.request("PUT", "/v1/customers/crm-big", json={"profile": {"n": 2**63}})).status_code == 201

    async def test_integer_beyond_64_bits_fails_the_interaction_only(self, api: JourneyApi) -> None:
        await api.touchpoint("shop", "web")
        item = {"customer": "c1", "touchpoint": "shop", "occurred_at": "2026-01-01T00:00:00Z"}
        body = await bulk(
            api,
            "interactions",
            [{**item, "event_id": "e1", "properties": {"n": -(2**64)}}, {**item, "event_id": "e2"}],
        )
        assert [i["status"] for i in body["items"]] == ["failed", "created"]
