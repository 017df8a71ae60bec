"""Dependency aliases shared by the feedback routers."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter

from services.common.auth import Caller, caller_with
from services.common.errors import PROBLEM_JSON, PROBLEM_RESPONSES

Reader = Annotated[Caller, caller_with("feedback:read")]
Writer = Annotated[Caller, caller_with("feedback:write")]
Admin = Annotated[Caller, caller_with("admin")]


def make_router() -> APIRouter:
    return APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES)


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI entries of the problem statuses a route itself answers (404 of an id in its path,
    409 of a conflict it names, 415 ...), so its documentation never depends on the router's list."""
    content = {PROBLEM_JSON: PROBLEM_RESPONSES[422]["content"][PROBLEM_JSON]}
    return {code: {"description": HTTPStatus(code).phrase, "content": content} for code in codes}
