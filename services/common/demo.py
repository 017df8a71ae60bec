"""The demo workspace `make run` loads over the public REST API (as an integrator would).

An energy supplier: two personas, a touchpoint catalogue across channels with yearly costs, and the
"switch supplier" journey as it is today plus the target journey that improves it; then 400
customers' interactions and purchases on it and their NPS answers with comments. Loading is
repeatable: whatever exists (by key, event id or response id) is stored once.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

PERSONAS = [
    {
        "key": "price-conscious-switcher",
        "name": "Price-conscious switcher",
        "role": "Tenant, 34, compares tariffs every year",
        "needs": ["a cheaper tariff without surprises", "a switch that takes minutes"],
        "goals": ["save at least 150 EUR a year"],
        "pains": ["hidden bonus conditions", "long waiting times on the hotline"],
        "priority": 10,
        "rules": [
            {
                "name": "uses comparison portals",
                "when": {"all": [{"attribute": "acquisition_channel", "op": "eq", "value": "portal"}]},
            }
        ],
    },
    {
        "key": "green-homeowner",
        "name": "Green homeowner",
        "role": "Homeowner, 52, solar panels on the roof",
        "needs": ["100 % renewable energy", "insight into own consumption"],
        "goals": ["lower the household's CO2 footprint"],
        "pains": ["opaque energy mix", "paper bills"],
        "priority": 20,
        "rules": [
            {
                "name": "owns a home with solar",
                "when": {
                    "all": [
                        {"attribute": "home.owner", "op": "eq", "value": True},
                        {"attribute": "home.solar", "op": "eq", "value": True},
                    ]
                },
            }
        ],
    },
]

TOUCHPOINTS = [
    ("comparison-portal", "Comparison portal listing", "partner", "Sales", "180000"),
    ("social-ads", "Social media ads", "social", "Marketing", "240000"),
    ("tariff-calculator", "Tariff calculator", "web", "Digital", "60000"),
    ("online-signup", "Online sign-up", "web", "Digital", "45000"),
    ("hotline", "Customer hotline", "phone", "Customer Service", "520000"),
    ("live-chat", "Live chat", "chat", "Customer Service", "90000"),
    ("welcome-email", "Welcome email", "email", "Marketing", "8000"),
    ("smart-meter-install", "Smart meter installation", "event", "Operations", "310000"),
    ("consumption-app", "Consumption dashboard app", "app", "Digital", "150000"),
    ("first-bill", "First bill", "print", "Billing", "70000"),
    ("customer-magazine", "Printed customer magazine", "print", "Marketing", "130000"),
]

# stage key -> [(touchpoint key, moment of truth, expected emotion)]
CURRENT_MAP = {
    "need": [("social-ads", False, 0), ("comparison-portal", True, 1), ("tariff-calculator", False, 0)],
    "buy": [("online-signup", True, 1), ("hotline", False, -1), ("welcome-email", False, 1)],
    "use": [
        ("smart-meter-install", False, -1),
        ("first-bill", True, -2),
        ("customer-magazine", False, 0),
        ("consumption-app", False, 1),
    ],
}
TARGET_MAP = {
    "need": [("comparison-portal", True, 1), ("tariff-calculator", False, 1)],
    "buy": [("online-signup", True, 2), ("live-chat", False, 1), ("welcome-email", False, 1)],
    "use": [("smart-meter-install", False, 0), ("consumption-app", True, 2), ("first-bill", True, 0)],
}


async def _ensure(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    found = (await client.get(path, params={"key": body["key"]})).raise_for_status().json()["items"]
    if found:
        return found[0]  # type: ignore[no-any-return]
    response = await client.post(path, json=body, headers={"Idempotency-Key": f"demo:{path}:{body['key']}"})
    return response.raise_for_status().json()  # type: ignore[no-any-return]


async def _place(
    client: httpx.AsyncClient,
    journey: dict[str, Any],
    plan: dict[str, list[tuple[str, bool, int]]],
    touchpoints: dict[str, dict[str, Any]],
) -> None:
    map_doc = (await client.get(f"/v1/journeys/{journey['id']}/map")).raise_for_status().json()
    if any(stage["steps"] for stage in map_doc["stages"]):
        return
    stages = {s["key"]: s for s in map_doc["stages"]}
    for stage_key, steps in plan.items():
        for tp_key, mot, emotion in steps:
            body = {
                "stage_id": stages[stage_key]["id"],
                "touchpoint_id": touchpoints[tp_key]["id"],
                "moment_of_truth": mot,
                "expected_emotion": emotion,
            }
            (await client.post(f"/v1/journeys/{journey['id']}/steps", json=body)).raise_for_status()


async def load_demo_workspace(journey_url: str, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=journey_url, headers=headers, timeout=30) as client:
        personas = {p["key"]: await _ensure(client, "/v1/personas", p) for p in PERSONAS}
        touchpoints = {
            key: await _ensure(
                client,
                "/v1/touchpoints",
                {
                    "key": key,
                    "name": name,
                    "channel": channel,
                    "department": dept,
                    "yearly_cost": cost,
                    "currency": "EUR",
                },
            )
            for key, name, channel, dept, cost in TOUCHPOINTS
        }
        current = await _ensure(
            client,
            "/v1/journeys",
            {
                "key": "switch-supplier",
                "name": "Switch energy supplier",
                "status": "active",
                "persona_id": personas["price-conscious-switcher"]["id"],
                "owner": "Lena Vogel",
                "team": "Journey team Switch",
                "description": "From first need to the first bill, as it runs today.",
            },
        )
        target = await _ensure(
            client,
            "/v1/journeys",
            {
                "key": "switch-supplier-target",
                "name": "Switch energy supplier (target)",
                "status": "draft",
                "state": "target",
                "improves_journey_id": current["id"],
                "persona_id": personas["price-conscious-switcher"]["id"],
                "owner": "Lena Vogel",
                "team": "Journey team Switch",
                "description": "Digital-first: chat instead of hotline, app before paper.",
            },
        )
        await _place(client, current, CURRENT_MAP, touchpoints)
        await _place(client, target, TARGET_MAP, touchpoints)


# What real customers did, and what they said ---------------------------------------------------

COMMENTS = {
    "low": [
        ("de", "Die Hotline war ewig besetzt, die erste Rechnung war unverständlich."),
        ("en", "Waited 40 minutes on the hotline and the first bill made no sense."),
        ("de", "Der Zählertermin wurde zweimal verschoben, sehr ärgerlich."),
    ],
    "mid": [("en", "Switching was fine, nothing special."), ("de", "Okay, aber die Rechnung kam per Post.")],
    "high": [
        ("en", "The app shows my consumption every day, great value for money."),
        ("de", "Wechsel in fünf Minuten erledigt, super einfach und günstig."),
    ],
}


NEED = [("social-ads", 0.4), ("comparison-portal", 0.7), ("tariff-calculator", 0.5)]
AFTER_SIGNUP = [("hotline", 0.3), ("welcome-email", 0.9), ("smart-meter-install", 0.7), ("first-bill", 0.8),
                ("customer-magazine", 0.3), ("consumption-app", 0.5)]  # fmt: skip


def _activity(
    seed: int = 7, customers: int = 400
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Deterministic interactions, outcomes and NPS answers: the hotline and the first bill hurt,
    the app helps. Ids are stable, so loading twice stores nothing twice."""
    rng = random.Random(seed)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=60)
    interactions, outcomes, responses = [], [], []
    for c in range(customers):
        customer, t = f"demo-{c:04d}", start + timedelta(minutes=rng.randrange(0, 50 * 24 * 60))
        # Everyone met the need stage somewhere (a customer who met nothing is not in the data).
        met = [key for key, p in NEED if rng.random() < p] or [rng.choice(NEED)[0]]
        bought = rng.random() < 0.6
        if bought:
            met += ["online-signup", *(key for key, p in AFTER_SIGNUP if rng.random() < p)]
        for n, key in enumerate(met):
            t += timedelta(minutes=rng.randrange(5, 3 * 24 * 60))
            interactions.append({"event_id": f"demo-i-{customer}-{n}", "customer": customer, "touchpoint": key,
                                 "occurred_at": t.isoformat(), "journey": "switch-supplier"})  # fmt: skip
            if key == "online-signup":
                outcomes.append({"event_id": f"demo-o-{customer}", "customer": customer, "name": "purchase",
                                 "value": "480.00", "currency": "EUR", "touchpoint": key,
                                 "occurred_at": t.isoformat(), "journey": "switch-supplier"})  # fmt: skip
        if bought and rng.random() < 0.7:
            score = 8 - 3 * ("hotline" in met) - 2 * ("first-bill" in met) + 2 * ("consumption-app" in met)
            score = max(0, min(10, score + rng.choice([-2, -1, 0, 0, 1])))
            band = "low" if score <= 6 else "mid" if score <= 8 else "high"
            language, comment = rng.choice(COMMENTS[band])
            responses.append({"response_id": f"demo-r-{customer}", "customer_external_id": customer,
                              "touchpoint_key": met[-1], "submitted_at": (t + timedelta(days=1)).isoformat(),
                              "answers": {"recommend": score}, "comment": comment, "language": language})  # fmt: skip
    return interactions, outcomes, responses


async def _survey(client: httpx.AsyncClient) -> dict[str, Any]:
    body = {
        "key": "switch-nps",
        "name": "How likely are you to recommend us?",
        "kind": "nps",
        "status": "active",
        "target": {"type": "journey", "journey_key": "switch-supplier"},
        "questions": [
            {
                "key": "recommend",
                "type": "nps",
                "required": True,
                "text": {
                    "en": "How likely are you to recommend us to a friend?",
                    "de": "Wie wahrscheinlich ist es, dass Sie uns weiterempfehlen?",
                },
            }
        ],
    }
    response = await client.post("/v1/surveys", json=body, headers={"Idempotency-Key": "demo:survey:switch-nps"})
    if response.status_code == 409:  # created by an earlier run whose key has expired
        page = (await client.get("/v1/surveys", params={"kind": "nps", "limit": 500})).raise_for_status().json()
        return next(s for s in page["items"] if s["key"] == "switch-nps")
    return response.raise_for_status().json()  # type: ignore[no-any-return]


async def load_demo_activity(journey_url: str, feedback_url: str, scoring_url: str, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    interactions, outcomes, responses = _activity()
    async with httpx.AsyncClient(base_url=journey_url, headers=headers, timeout=60) as client:
        (await client.post("/v1/interactions/bulk", json={"items": interactions})).raise_for_status()
        (await client.post("/v1/outcomes/bulk", json={"items": outcomes})).raise_for_status()
    async with httpx.AsyncClient(base_url=feedback_url, headers=headers, timeout=60) as client:
        survey = await _survey(client)
        items = [{**r, "survey_id": survey["id"]} for r in responses]
        (await client.post("/v1/responses/bulk", json={"items": items})).raise_for_status()
    await wait_for_projections([journey_url, feedback_url, scoring_url], token)
    async with httpx.AsyncClient(base_url=journey_url, headers=headers, timeout=60) as client, asyncio.timeout(60):
        consumers = (await client.get("/v1/admin/consumers")).raise_for_status().json()["items"]
        applied = next(c["as_of"] for c in consumers if c["consumer"] == "journey-analytics")
        journeys = (await client.get("/v1/journeys")).raise_for_status().json()["items"]
        for journey in journeys:  # rebuilt in the background since its steps were placed
            while True:
                funnel = (await client.get(f"/v1/journeys/{journey['id']}/funnel")).raise_for_status().json()
                if funnel["as_of"] == applied:  # built, and complete up to every event applied
                    break
                await asyncio.sleep(0.2)
    await wait_for_scores(
        scoring_url, token, [j["id"] for j in journeys], customers=len({i["customer"] for i in interactions})
    )


async def wait_for_scores(scoring_url: str, token: str, journey_ids: list[str], *, customers: int) -> None:
    """Until the demo journey's scores count every demo customer (the scoring service follows the events)."""
    async with httpx.AsyncClient(base_url=scoring_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
        async with asyncio.timeout(90):
            while True:
                batch = (await c.get("/v1/scores", params={"journey_id": journey_ids})).raise_for_status().json()
                if any(s["counts"]["customers"] >= customers for s in batch["items"]):
                    return
                await asyncio.sleep(0.3)


async def wait_for_projections(urls: list[str], token: str, *, within: float = 60.0) -> None:
    """Until every consumer of these services has applied every event so far (derived data is built
    in the background): the demo shows its figures once `make run` says it is ready."""
    deadline = asyncio.get_running_loop().time() + within
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
        for url in urls:
            while True:
                consumers = (await client.get(f"{url}/v1/admin/consumers")).raise_for_status().json()["items"]
                if all(c["pending_events"] == 0 for c in consumers):
                    break
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(f"{url}: the consumers did not catch up within {within:.0f} s: {consumers}")
                await asyncio.sleep(0.2)
