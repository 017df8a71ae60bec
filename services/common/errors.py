"""RFC 9457 problem+json for every failure, with per-field details for validation errors."""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.common.events import EventTooLarge

PROBLEM_JSON = "application/problem+json"
# Every 422, whoever finds the problem (pydantic, a handler, the database), has this one type.
VALIDATION_TYPE = "validation-error"
log = structlog.get_logger(__name__)


class Problem(Exception):
    """An expected failure, rendered as problem+json. Subclasses fix the status."""

    status: int = 400
    type_slug: str = "bad-request"

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors) if errors else None
        self.headers = headers or {}
        self.extra = extra


class Unauthorized(Problem):
    status, type_slug = 401, "unauthorized"


class Forbidden(Problem):
    status, type_slug = 403, "forbidden"


class NotFound(Problem):
    status, type_slug = 404, "not-found"


class Conflict(Problem):
    status, type_slug = 409, "conflict"


class Unprocessable(Problem):
    status, type_slug = 422, VALIDATION_TYPE


class UnsupportedMediaType(Problem):
    status, type_slug = 415, "unsupported-media-type"


class PayloadTooLarge(Problem):
    status, type_slug = 413, "payload-too-large"


class TooManyRequests(Problem):
    status, type_slug = 429, "rate-limited"


class ServiceUnavailable(Problem):
    """Something this service depends on does not answer now; send `Retry-After`."""

    status, type_slug = 503, "service-unavailable"


def problem_response(
    status: int,
    detail: str,
    *,
    type_slug: str | None = None,
    instance: str | None = None,
    errors: Sequence[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    title = HTTPStatus(status).phrase
    slug = VALIDATION_TYPE if status == 422 else type_slug or _slug(title)
    body: dict[str, Any] = {
        "type": f"https://journeygraph.dev/problems/{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = list(errors)
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _driver_errors(exc: BaseException) -> tuple[Any, ...]:
    # SQLAlchemy's error wraps the adapter's, whose cause is asyncpg's; hot paths that run on the
    # driver connection (services.common.db.RawStatement) raise asyncpg's own.
    if isinstance(exc, DBAPIError):
        return (exc.orig, getattr(exc.orig, "__cause__", None))
    return (exc,)


def sqlstate_of(exc: BaseException) -> str:
    """The SQLSTATE of a database error."""
    for err in _driver_errors(exc):
        state = getattr(err, "sqlstate", None)
        if state:
            return str(state)
    return ""


def constraint_of(exc: BaseException) -> str | None:
    """The violated constraint's name (asyncpg puts it on its error)."""
    for err in _driver_errors(exc):
        name = getattr(err, "constraint_name", None)
        if name:
            return str(name)
    return None


def _slug(title: str) -> str:
    return title.lower().replace(" ", "-").replace("'", "")


# What a person can correct, per SQLSTATE of class 22 (data exception); 22000 is asyncpg's own,
# raised when a parameter does not fit its column's type (a year past 9999, an int over 32 bits).
_DATA_ERRORS = {
    "22000": "a value is outside the range its field can store",
    "22001": "a text is longer than its field allows",
    "22003": "a number is outside the range that can be stored",
    "22007": "a date or time is malformed",
    "22008": "a date or time is outside the range that can be stored",
    "22012": "a calculation over the request's values divides by zero",
    "22021": "a text holds a character that cannot be stored (NUL or invalid UTF-8)",
    "22P02": "a value does not have the expected format",
    "22P05": "a text holds a character that cannot be stored (NUL or invalid UTF-8)",
    # Class 23 states a retry cannot cure: the request itself lacks a value or breaks a rule.
    "23502": "a required value is missing",
    "23514": "a value breaks a rule of its field",
}
RETRY_AFTER_SECONDS = 2


def _unavailable(request: Request, what: str) -> JSONResponse:
    return problem_response(
        503,
        f"{what}; retry in {RETRY_AFTER_SECONDS} s. Retrying with the same Idempotency-Key is safe.",
        instance=request.url.path,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _allowed_methods(request: Request) -> list[str]:
    """Every method the routes of this path serve (Starlette's 405 names the first route's only).
    As in OpenAPI, a concrete path wins over a templated one: /customers/bulk is not /customers/{id}."""
    path = request.scope["path"]
    by_params: dict[int, set[str]] = {}
    for route in iter_route_contexts(request.app.router.routes):
        regex = getattr(route, "path_regex", None)
        if route.methods and regex is not None and regex.match(path):
            by_params.setdefault(len(route.param_convertors), set()).update(route.methods)
    return sorted(by_params[min(by_params)]) if by_params else []


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        # "body.name" reads better than ["body", "name"] for a person fixing a request.
        out.append({"field": ".".join(loc), "message": err.get("msg", ""), "type": err.get("type", "")})
    return out


def install_problem_handlers(app: FastAPI) -> None:
    """Map every failure to problem+json; no bad input ever yields a 500."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(
            exc.status,
            exc.detail,
            type_slug=exc.type_slug,
            instance=request.url.path,
            errors=exc.errors,
            headers=exc.headers,
            **exc.extra,
        )

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = _field_errors(exc)
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem_response(
            422,
            f"The request is not valid: {summary}",
            type_slug=VALIDATION_TYPE,
            instance=request.url.path,
            errors=errors,
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        headers = getattr(exc, "headers", None)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No route matches {request.method} {request.url.path}."
        elif exc.status_code == 405:
            allowed = _allowed_methods(request)
            detail = f"{request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}."
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
        return problem_response(exc.status_code, detail, instance=request.url.path, headers=headers)

    async def on_database_error(request: Request, exc: Exception) -> JSONResponse:
        state = sqlstate_of(exc)
        if (isinstance(exc, IntegrityError) or state.startswith("23")) and state not in _DATA_ERRORS:
            # Reaches here only when a unique or foreign key fails at commit (deferred constraints,
            # races between concurrent requests); expected conflicts are named by the store earlier.
            log.warning("conflict at commit", path=request.url.path, sqlstate=state, constraint=constraint_of(exc))
            return problem_response(
                409,
                "The change conflicts with another change made at the same time; nothing was stored. "
                "Read the current state and retry.",
                type_slug="conflict",
                instance=request.url.path,
            )
        if state.startswith(("22", "23")):  # a value PostgreSQL cannot store, compare or accept
            # The driver's text names internals (query arguments, encodings): logged, not answered.
            log.warning("data error", path=request.url.path, sqlstate=state, error=str(exc).split("\n")[0][:300])
            reason = _DATA_ERRORS.get(state, "a value is outside what can be stored or compared")
            return problem_response(
                422,
                f"A value in the request cannot be used: {reason}. Correct it and send the request again.",
                instance=request.url.path,
                errors=[{"field": "body", "message": reason}],
            )
        if state.startswith(("53", "57P")):  # out of connections or memory; shutting down
            return _unavailable(request, "The database is busy")
        return await on_unexpected(request, exc)

    async def on_pool_timeout(request: Request, exc: Exception) -> JSONResponse:
        # Every pooled connection stayed busy for the pool's timeout: overload, not a fault.
        return _unavailable(request, "The service is busy (no database connection became free)")

    async def on_too_large_event(request: Request, exc: Exception) -> JSONResponse:
        # A change whose event would not fit the budget (validation limits make it rare).
        return problem_response(422, f"The change cannot be published: {exc}.", instance=request.url.path)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return problem_response(
            500,
            "An unexpected error occurred; it has been logged. Retrying with the same Idempotency-Key is safe.",
            instance=request.url.path,
        )

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(DBAPIError, on_database_error)
    app.add_exception_handler(asyncpg.PostgresError, on_database_error)
    app.add_exception_handler(PoolTimeout, on_pool_timeout)
    app.add_exception_handler(EventTooLarge, on_too_large_event)
    app.add_exception_handler(Exception, on_unexpected)


_PROBLEM_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["type", "title", "status", "detail"],
}


def problem_doc(status: int, description: str | None = None) -> dict[str, Any]:
    """The OpenAPI `responses` entry of a problem answer."""
    content = {PROBLEM_JSON: {"schema": _PROBLEM_SCHEMA}}
    return {"description": description or HTTPStatus(status).phrase, "content": content}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI entries of the problem statuses a route itself answers (404 of an id in its path,
    409 of a conflict it names, ...), so its documentation never depends on the router's list."""
    return {code: problem_doc(code) for code in codes}


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: problem_doc(code) for code in (400, 401, 403, 404, 409, 413, 422, 429, 503)
}
