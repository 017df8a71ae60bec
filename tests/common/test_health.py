"""Probes may use HEAD: load balancers and uptime checks often do."""

from __future__ import annotations

import httpx


class TestProbes:
    async def test_health_and_readiness_answer_head(self, journey_http: httpx.AsyncClient) -> None:
        for path in ("/healthz", "/readyz"):
            response = await journey_http.head(path)
            assert response.status_code == 200, path
