"""Typed helpers that create feedback objects through the real API."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Keys, unique_name
from tests.eventually import eventually

ALL_SCOPES = ["feedback:read", "feedback:write"]


def nps_questions() -> list[dict[str, Any]]:
    return [
        {
            "key": "recommend",
            "type": "nps",
            "required": True,
            "text": {"en": "Would you recommend us?", "de": "Würden Sie uns empfehlen?"},
        },
        {"key": "reason", "type": "text", "text": {"en": "Why?"}},
    ]


class FeedbackApi:
    """A client for one workspace with read and write scopes."""

    def __init__(self, http: httpx.AsyncClient, keys: Keys, workspace: str, scopes: list[str] | None = None) -> None:
        self.http = http
        self.keys = keys
        self.workspace = workspace
        self.headers = keys.headers(workspace, scopes or ALL_SCOPES)

    def other(self, workspace: str | None = None) -> FeedbackApi:
        return FeedbackApi(self.http, self.keys, workspace or unique_name("ws"))

    def admin(self) -> FeedbackApi:
        return FeedbackApi(self.http, self.keys, self.workspace, ["admin"])

    async def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        headers = {**self.headers, **kw.pop("headers", {})}
        return await self.http.request(method, url, headers=headers, **kw)

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", url, **kw)

    async def post(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("POST", url, **kw)

    async def patch(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("PATCH", url, **kw)

    async def put(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("PUT", url, **kw)

    async def delete(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("DELETE", url, **kw)

    async def ok(self, url: str, **kw: Any) -> Any:
        response = await self.get(url, **kw)
        assert response.status_code == 200, response.text
        return response.json()

    async def created(self, url: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
        response = await self.post(url, json=body)
        assert response.status_code == status, response.text
        return response.json()  # type: ignore[no-any-return]

    async def survey(
        self,
        key: str = "after-purchase",
        *,
        kind: str = "nps",
        status: str = "active",
        questions: list[dict[str, Any]] | None = None,
        target: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "key": key,
            "name": key,
            "kind": kind,
            "status": status,
            "questions": questions or nps_questions(),
        }
        if target is not None:
            body["target"] = target
        return await self.created("/v1/surveys", body)

    async def respond(self, survey_id: str, answers: dict[str, Any], **fields: Any) -> dict[str, Any]:
        return await self.created("/v1/responses", {"survey_id": survey_id, "answers": answers, **fields})

    async def bulk(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return await self.created("/v1/responses/bulk", {"items": items}, status=200)

    async def metric(self, name: str = "nps", *, n: int, **params: Any) -> dict[str, Any]:
        """The metric's answer once it counts `n` responses (the rollup projection follows the writes)."""

        async def counted() -> dict[str, Any] | None:
            body = await self.ok(f"/v1/metrics/{name}", params=params)
            return body if body["overall"]["n"] == n else None

        return await eventually(counted)

    async def cases(self, n: int, **params: Any) -> list[dict[str, Any]]:
        """The workspace's cases once there are `n` >= 1 (the cases projection follows the writes)."""
        assert n >= 1, "an absence needs a positive signal first, not a wait for nothing"

        async def opened() -> list[dict[str, Any]] | None:
            items: list[dict[str, Any]] = (await self.ok("/v1/cases", params=params))["items"]
            return items if len(items) == n else None

        return await eventually(opened)
