"""Typed helpers for customers, interactions and outcomes, through the real API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.journey.factories import JourneyApi

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(hours: float = 0, days: float = 0) -> str:
    """A timestamp relative to a fixed origin, so expected figures are exact."""
    return (T0 + timedelta(hours=hours, days=days)).isoformat()


def touch(event_id: str, customer: str, touchpoint: str, when: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "customer": customer, "touchpoint": touchpoint, "occurred_at": when, **fields}


async def bulk(api: JourneyApi, kind: str, items: list[Any]) -> dict[str, Any]:
    response = await api.post(f"/v1/{kind}/bulk", json={"items": items})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def put_customer(api: JourneyApi, external_id: str, **body: Any) -> dict[str, Any]:
    response = await api.request("PUT", f"/v1/customers/{external_id}", json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


async def bike_journey(api: JourneyApi) -> dict[str, Any]:
    """Journey Need → Buy → Use with touchpoints ad (need), shop + store (buy), app (use)."""
    journey = await api.journey("bike")
    stages = await api.stages(journey["id"])
    tps = {
        "ad": await api.touchpoint("ad", "social"),
        "shop": await api.touchpoint("shop", "web"),
        "store": await api.touchpoint("store", "store"),
        "app": await api.touchpoint("app", "app"),
    }
    await api.step(journey["id"], stages[0]["id"], tps["ad"]["id"])
    await api.step(journey["id"], stages[1]["id"], tps["shop"]["id"])
    await api.step(journey["id"], stages[1]["id"], tps["store"]["id"])
    await api.step(journey["id"], stages[2]["id"], tps["app"]["id"])
    return {"journey": journey, "stages": stages, "touchpoints": tps}
