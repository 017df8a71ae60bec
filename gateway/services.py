"""The services as the gateway calls them: over HTTP, with the caller's own token (each service checks
it and scopes every row to its workspace), through one pooled client per process.

A service's problem+json becomes a GraphQL error at the field that needed it, carrying the problem
(status, title, detail); a service that cannot be reached is an error of its own kind. Either way
the rest of the answer is still served."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
from graphql import GraphQLError
from opentelemetry import propagate

from gateway.settings import GatewaySettings
from services.common.auth import Caller

SERVICES = ("journey", "feedback", "scoring")
# The scope each service asks of a reader and of a writer (the services check them too). The gateway
# checks them before it calls, so what a caller may not see is an error at its fields without a call,
# and the response cache, keyed by the caller's scopes, never serves one caller's fields to another.
READ_SCOPES = {"journey": "journeys:read", "feedback": "feedback:read", "scoring": "scores:read"}
WRITE_SCOPES = {"journey": "journeys:write", "feedback": "feedback:write", "scoring": "admin"}


class ServiceError(GraphQLError):
    def __init__(self, service: str, status: int | None, problem: dict[str, Any]) -> None:
        detail = problem.get("detail") or problem.get("title") or "failed"
        super().__init__(
            f"The {service} service answered: {detail}" if status else f"The {service} service: {detail}",
            extensions={"code": "SERVICE_ERROR" if status else "SERVICE_UNAVAILABLE", "service": service,
                        "status": status, "problem": problem},
        )  # fmt: skip


class MissingScope(ServiceError):
    """What the service would refuse (403), refused before the call: the caller's token lacks the scope."""

    def __init__(self, service: str, scope: str) -> None:
        GraphQLError.__init__(
            self,
            f"Your token lacks the `{scope}` scope this field needs; ask for a token with it.",
            extensions={"code": "FORBIDDEN", "service": service, "status": 403, "scope": scope},
        )


def require(caller: Caller, service: str, scopes: dict[str, str]) -> None:
    if not caller.has(scopes[service]):
        raise MissingScope(service, scopes[service])


class Services:
    """One pooled HTTP client for the three services."""

    def __init__(self, settings: GatewaySettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base = {
            "journey": settings.journey_url.rstrip("/"),
            "feedback": settings.feedback_url.rstrip("/"),
            "scoring": settings.scoring_url.rstrip("/"),
        }
        self.client = httpx.AsyncClient(timeout=settings.service_timeout_seconds, transport=transport)
        self.calls = 0  # service calls made by this process (the level plan's test counts them)
        # Identical GETs in flight at once (same service, path, parameters and caller's token) share
        # one call: concurrent requests for one view cost the services one read. Nothing is kept
        # once the call answers.
        self._in_flight: dict[tuple[Any, ...], asyncio.Future[Any]] = {}

    async def close(self) -> None:
        await self.client.aclose()

    async def get(self, service: str, path: str, *, authorization: str, params: Any = None) -> Any:
        """The JSON of a GET; ServiceError for a problem or an unreachable service."""
        pairs = params.items() if isinstance(params, dict) else params or ()
        key = (service, path, tuple((str(k), str(v)) for k, v in pairs), authorization)
        shared = self._in_flight.get(key)
        if shared is None:
            call = self.send("GET", service, path, authorization=authorization, params=params)
            shared = self._in_flight[key] = asyncio.ensure_future(call)
            shared.add_done_callback(lambda _: self._in_flight.pop(key, None))
        return await asyncio.shield(shared)

    async def send(
        self,
        method: str,
        service: str,
        path: str,
        *,
        authorization: str,
        params: Any = None,
        json: Any = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """One call of its own (writes come here directly; `get` shares identical reads): the JSON answer
        (None for a 204), a write under the Idempotency-Key if one is given; ServiceError as for `get`."""
        self.calls += 1
        headers = {"Authorization": authorization}
        propagate.inject(headers)  # one trace from the caller through the gateway into the service
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        content = None
        if json is not None:
            content, headers["Content-Type"] = orjson.dumps(json), "application/json"
        try:
            response = await self.client.request(
                method, self.base[service] + path, params=params, content=content, headers=headers
            )
        except httpx.HTTPError as exc:
            raise ServiceError(
                service, None, {"title": "unreachable", "detail": str(exc) or type(exc).__name__}
            ) from exc
        if response.status_code >= 400:
            try:
                problem = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                problem = {"title": response.reason_phrase}
            raise ServiceError(service, response.status_code, problem if isinstance(problem, dict) else {})
        return orjson.loads(response.content) if response.content else None
