"""Typed helpers that create journey objects through the real API."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Keys, unique_name

ALL_SCOPES = ["journeys:read", "journeys:write"]


class JourneyApi:
    """A client for one workspace with read and write scopes."""

    def __init__(self, http: httpx.AsyncClient, keys: Keys, workspace: str) -> None:
        self.http = http
        self.keys = keys
        self.workspace = workspace
        self.headers = keys.headers(workspace, ALL_SCOPES)

    def other(self, workspace: str | None = None) -> JourneyApi:
        return JourneyApi(self.http, self.keys, workspace or unique_name("ws"))

    async def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        headers = {**self.headers, **kw.pop("headers", {})}
        return await self.http.request(method, url, headers=headers, **kw)

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", url, **kw)

    async def post(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("POST", url, **kw)

    async def patch(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("PATCH", url, **kw)

    async def delete(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("DELETE", url, **kw)

    async def created(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.post(url, json=body)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    async def persona(self, key: str = "pragmatic-buyer", **fields: Any) -> dict[str, Any]:
        return await self.created("/v1/personas", {"key": key, "name": key.replace("-", " ").title(), **fields})

    async def touchpoint(self, key: str = "web-shop", channel: str = "web", **fields: Any) -> dict[str, Any]:
        return await self.created("/v1/touchpoints", {"key": key, "name": key, "channel": channel, **fields})

    async def journey(self, key: str = "buy-a-bike", **fields: Any) -> dict[str, Any]:
        return await self.created("/v1/journeys", {"key": key, "name": key, **fields})

    async def stages(self, journey_id: str) -> list[dict[str, Any]]:
        response = await self.get(f"/v1/journeys/{journey_id}/stages")
        assert response.status_code == 200, response.text
        return response.json()["items"]  # type: ignore[no-any-return]

    async def step(self, journey_id: str, stage_id: str, touchpoint_id: str, **fields: Any) -> dict[str, Any]:
        return await self.created(
            f"/v1/journeys/{journey_id}/steps", {"stage_id": stage_id, "touchpoint_id": touchpoint_id, **fields}
        )
