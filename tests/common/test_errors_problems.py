"""Every 422 has one problem type, whoever finds the problem; a value PostgreSQL refuses is a 422
with a message a person can act on, never the driver's text."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import FastAPI, Query
from pydantic import BaseModel
from sqlalchemy import text

from services.common.db import create_engine, ensure_database
from services.common.errors import Unprocessable, install_problem_handlers
from tests.conftest import Servers, unique_name

VALIDATION = "https://journeygraph.dev/problems/validation-error"


class Item(BaseModel):
    n: int


@pytest.fixture(scope="module")
async def kit_http(servers: Servers) -> AsyncIterator[httpx.AsyncClient]:
    """An app of the kit's problem handlers whose routes send the values to a real PostgreSQL."""
    url = servers.database_url(unique_name("jg_kit_errors"))
    await ensure_database(url)
    engine = create_engine(url, pool_size=2)
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/integers")
    async def store_integer(body: Item) -> dict[str, int]:
        async with engine.connect() as conn:  # an int beyond 32 bits: asyncpg refuses it (22000)
            return {"n": (await conn.execute(text("SELECT CAST(:n AS int)"), {"n": body.n})).scalar_one()}

    @app.get("/texts")
    async def store_text(value: Annotated[str, Query()]) -> dict[str, str]:
        async with engine.connect() as conn:  # PostgreSQL refuses NUL in text (22021)
            return {"value": (await conn.execute(text("SELECT CAST(:v AS text)"), {"v": value})).scalar_one()}

    @app.get("/ratios")
    async def divide(by: Annotated[int, Query()]) -> dict[str, int]:
        async with engine.connect() as conn:  # division by zero (22012)
            return {"ratio": (await conn.execute(text("SELECT 1 / CAST(:d AS int)"), {"d": by})).scalar_one()}

    @app.get("/checks")
    async def check(value: Annotated[int | None, Query()] = None) -> None:
        async with engine.begin() as conn:  # NOT NULL (23502) and CHECK (23514): a retry cannot cure them
            await conn.execute(text("CREATE TEMP TABLE t (n int NOT NULL CHECK (n > 0)) ON COMMIT DROP"))
            await conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": value})

    @app.get("/refusals")
    async def refuse() -> None:
        raise Unprocessable("The journey has no such stage.", errors=[{"field": "body.stage_id", "message": "unknown"}])

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://kit") as client:
        yield client
    await engine.dispose()


class TestDataErrors:
    @pytest.mark.parametrize(
        ("method", "url", "kwargs", "reason"),
        [
            ("POST", "/integers", {"json": {"n": 2**40}}, "outside the range"),
            ("GET", "/texts", {"params": {"value": "a\x00b"}}, "character that cannot be stored"),
            ("GET", "/ratios", {"params": {"by": 0}}, "divides by zero"),
            ("GET", "/checks", {}, "required value is missing"),
            ("GET", "/checks", {"params": {"value": -1}}, "breaks a rule"),
        ],
    )
    async def test_a_value_the_database_refuses_is_a_422_without_driver_text(
        self, kit_http: httpx.AsyncClient, method: str, url: str, kwargs: dict[str, object], reason: str
    ) -> None:
        response = await kit_http.request(method, url, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["type"] == VALIDATION
        assert reason in body["detail"]
        assert body["errors"]
        assert {"field", "message"} <= set(body["errors"][0])
        for internal in ("$1", "query argument", "asyncpg", "SQL", "CAST", "0x00", "UTF8", "int32"):
            assert internal not in response.text, response.text


class TestOneValidationType:
    async def test_pydantic_handler_and_database_422s_share_one_type(self, kit_http: httpx.AsyncClient) -> None:
        answers = [
            await kit_http.post("/integers", json={"n": "many"}),  # pydantic
            await kit_http.get("/refusals"),  # a handler's Unprocessable
            await kit_http.post("/integers", json={"n": 2**40}),  # the database
        ]
        assert [a.status_code for a in answers] == [422, 422, 422]
        assert {a.json()["type"] for a in answers} == {VALIDATION}
        assert all(a.headers["content-type"] == "application/problem+json" for a in answers)
