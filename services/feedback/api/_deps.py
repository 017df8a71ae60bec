"""Dependency aliases shared by the feedback routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from services.common.auth import Caller, caller_with
from services.common.errors import PROBLEM_RESPONSES

Reader = Annotated[Caller, caller_with("feedback:read")]
Writer = Annotated[Caller, caller_with("feedback:write")]
Admin = Annotated[Caller, caller_with("admin")]


def make_router() -> APIRouter:
    return APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES)
