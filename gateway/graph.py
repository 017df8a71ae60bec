"""The schema: its root types assembled in one place, for the contract (export.py) and for serving
(`served_schema` adds the limits, the masking and the fast execution)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import strawberry
from graphql.execution import Executor
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from gateway.catalog import CatalogQuery
from gateway.customers import CustomerQuery
from gateway.feedback import FeedbackQuery
from gateway.live import Subscription
from gateway.mutations import Mutation
from gateway.schema import Query

# The root Query's fields, from the modules that own them.
ROOT_QUERY = merge_types("Query", (Query, CatalogQuery, FeedbackQuery, CustomerQuery))


def make_schema(
    extensions: Sequence[Callable[[], SchemaExtension]] = (),
    execution_context_class: type[Executor[Any]] | None = None,
    config: StrawberryConfig | None = None,
) -> strawberry.Schema:
    return strawberry.Schema(
        query=ROOT_QUERY,
        mutation=Mutation,
        subscription=Subscription,
        extensions=list(extensions),
        execution_context_class=execution_context_class,
        config=config,
    )


schema = make_schema()
