"""A persona's rule change re-evaluates every customer in the background (own-event consumer); each
customer whose persona changes gets version + 1, published in `journey.customer.reassigned`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from tests.conftest import Servers
from tests.events import published_events
from tests.eventually import eventually
from tests.journey.activity_factories import bulk, put_customer
from tests.journey.factories import JourneyApi

B2C = {"name": "b2c", "when": {"attribute": "segment", "op": "eq", "value": "b2c"}}
B2B = {"name": "b2b", "when": {"attribute": "segment", "op": "eq", "value": "b2b"}}


async def customer_once(api: JourneyApi, external_id: str, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The customer, once the reassignment running in the background made `check` true."""

    async def matched() -> dict[str, Any] | None:
        customer: dict[str, Any] = (await api.get(f"/v1/customers/{external_id}")).json()
        return customer if check(customer) else None

    return await eventually(matched)


class TestPersonaReassignment:
    async def test_rule_change_reassigns_existing_customers(
        self, api: JourneyApi, journey_app: FastAPI, servers: Servers
    ) -> None:
        family = await api.persona("family", rules=[B2C])
        await bulk(
            api,
            "customers",
            [{"external_id": f"c{i}", "profile": {"segment": "b2b" if i % 2 else "b2c"}} for i in range(6)],
        )
        assert (await api.get("/v1/customers/c1")).json()["persona_id"] is None
        patched = await api.patch(f"/v1/personas/{family['id']}", json={"rules": [B2B]})
        assert patched.status_code == 200, patched.text
        c1 = await customer_once(api, "c1", lambda c: c["persona_id"] == family["id"])
        assert c1["persona_rule"] == "b2b"
        await customer_once(api, "c0", lambda c: c["persona_id"] is None)
        listed = (await api.get("/v1/customers", params={"persona_id": family["id"]})).json()["items"]
        assert sorted(c["external_id"] for c in listed) == ["c1", "c3", "c5"]
        # b2c customers: reassigned twice (family, then none); b2b ones once (then family)
        assert sorted((c["external_id"], c["version"]) for c in (await api.get("/v1/customers")).json()["items"]) == [
            ("c0", 2), ("c1", 2), ("c2", 2), ("c3", 2), ("c4", 2), ("c5", 2),
        ]  # fmt: skip
        events = await published_events(journey_app, servers.nats_url, api.workspace)
        reassigned = [i for e in events if e["type"] == "journey.customer.reassigned" for i in e["data"]["items"]]
        assert sorted((i["external_id"], i["version"], i["persona_key"]) for i in reassigned) == [
            ("c0", 2, None), ("c1", 2, "family"), ("c2", 2, None), ("c3", 2, "family"), ("c4", 2, None),
            ("c5", 2, "family"),
        ]  # fmt: skip

    async def test_new_persona_and_deleted_persona(self, api: JourneyApi) -> None:
        await put_customer(api, "c1", profile={"segment": "b2c"})
        family = await api.persona("family", rules=[B2C])
        await customer_once(api, "c1", lambda c: c["persona_id"] == family["id"])
        assert (await api.delete(f"/v1/personas/{family['id']}")).status_code == 204
        c1 = await customer_once(api, "c1", lambda c: c["persona_id"] is None and c["persona_rule"] is None)
        assert c1["persona_key"] is None

    async def test_other_workspaces_are_untouched(self, api: JourneyApi) -> None:
        other = api.other()
        await put_customer(other, "c1", profile={"segment": "b2c"})
        await put_customer(api, "c1", profile={"segment": "b2c"})
        family = await api.persona("family", rules=[B2C])
        # once the job has run for this workspace, the other workspace's twin must be unchanged
        await customer_once(api, "c1", lambda c: c["persona_id"] == family["id"])
        assert (await other.get("/v1/customers/c1")).json()["persona_id"] is None
