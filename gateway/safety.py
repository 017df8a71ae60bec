"""What the gateway refuses before running a document (depth, aliases, tokens; introspection in
production), and what it hides after: an unexpected failure is answered with a reference a person
can quote, its details go to the log under that reference. The limiters' own messages, the services'
problems (`ServiceError`) and the callers' own mistakes (`ValueError` of a resolver) stay readable."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import strawberry
import structlog
from graphql import GraphQLError
from strawberry.extensions import (
    DisableIntrospection,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)

from gateway.graph import make_schema
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


def served_schema(settings: GatewaySettings) -> strawberry.Schema:
    """The schema with the limits and the masking (a new extension per operation)."""
    extensions: list[Callable[[], SchemaExtension]] = [
        lambda: QueryDepthLimiter(max_depth=settings.max_depth),
        lambda: MaxAliasesLimiter(max_alias_count=settings.max_aliases),
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
        MaskUnexpected,
    ]
    if settings.production:
        extensions.append(DisableIntrospection)
    return make_schema(extensions)
