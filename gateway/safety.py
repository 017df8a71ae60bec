"""What the gateway refuses before running a document (depth, aliases, tokens; introspection in
production), and what it hides after: an unexpected failure is answered with a reference a person
can quote, its details go to the log under that reference. The limiters' own messages, the services'
problems (`ServiceError`) and the callers' own mistakes (`ValueError` of a resolver) stay readable."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import strawberry
import structlog
from graphql import ExecutionResult, GraphQLError
from starlette.websockets import WebSocket
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types.graphql import OperationType

from gateway.cache import CacheResponses, ResponseCache
from gateway.cost import CostLimiter
from gateway.fast import FastExecutor
from gateway.graph import make_schema
from gateway.live import ContextPerOperation
from gateway.services import ServiceError
from gateway.settings import GatewaySettings

log = structlog.get_logger(__name__)


def _readable(error: GraphQLError) -> bool:
    cause = error.original_error
    return cause is None or isinstance(cause, ServiceError | ValueError)


class MaskUnexpected(MaskErrors):
    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda error: not _readable(error))

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        reference = str(uuid.uuid4())
        log.error("unexpected error in a resolver", reference=reference, path=error.path, exc_info=error.original_error)
        masked = super().anonymise_error(error)
        masked.message = f"Unexpected error; quote reference {reference} when you report it."
        masked.extensions = {"code": "INTERNAL", "reference": reference}
        return masked


class SubscriptionsOverWebSocket(SchemaExtension):
    """A subscription sent over HTTP is refused with a message saying where it runs (strawberry would
    run it as a query, which fails)."""

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        request = getattr(ctx.context, "request", None)
        if ctx.operation_type is OperationType.SUBSCRIPTION and not isinstance(request, WebSocket):
            message = "Subscriptions run over a WebSocket at /graphql (graphql-transport-ws), not over HTTP."
            ctx.result = ExecutionResult(data=None, errors=[GraphQLError(message, extensions={"code": "BAD_REQUEST"})])
        yield


def served_schema(settings: GatewaySettings, cache: ResponseCache | None = None) -> strawberry.Schema:
    """The schema with the limits, the cost analysis and the masking (a new extension per operation);
    in production without introspection and field suggestions."""
    # The depth and alias limits are validation rules, made once here: a document is then parsed and
    # validated once (the caches are keyed by its text, and by it and the rules; they hold no data).
    # Validating the unified view's document costs graphql-core a few milliseconds each time.
    limits = [
        *QueryDepthLimiter(max_depth=settings.max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.max_aliases).validation_rules,
    ]
    extensions: list[Callable[[], SchemaExtension]] = [
        ContextPerOperation,
        lambda: ParserCache(maxsize=256),
        lambda: AddValidationRules(limits),
        lambda: ValidationCache(maxsize=256),
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
        lambda: CostLimiter(max_cost=settings.max_cost, assumed_list_size=settings.assumed_list_size),
        MaskUnexpected,
        SubscriptionsOverWebSocket,
    ]
    if cache is not None:
        extensions.append(lambda: CacheResponses(cache))
    if settings.production:
        extensions.append(DisableIntrospection)
    return make_schema(
        extensions,
        FastExecutor if settings.fast_execution else None,
        StrawberryConfig(disable_field_suggestions=settings.production),
    )
