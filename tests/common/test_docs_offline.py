"""The API docs work without the internet: /docs and /redoc load their scripts, styles and icon
from the service itself (a CDN left them blank on a machine offline)."""

from __future__ import annotations

import re

import httpx
import pytest


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_page_loads_only_assets_the_service_serves(journey_http: httpx.AsyncClient, page: str) -> None:
    response = await journey_http.get(page)
    assert response.status_code == 200
    html = response.text
    elsewhere = re.findall(r"[a-z]+://[^\"' ]+", html)
    assert elsewhere == [], f"{page} loads from another host"
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert any(a.endswith(".js") for a in assets), assets
    for asset in assets:
        assert re.match(r"/[^/]", asset), asset
        loaded = await journey_http.get(asset)
        assert loaded.status_code == 200, asset
        assert len(loaded.content) > 1000, asset
    spec = re.search(r"""(?:url: ?|spec-url=)["']([^"']+)["']""", html)
    assert spec, html
    assert (await journey_http.get(spec.group(1))).json()["info"]["title"]
