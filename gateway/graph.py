"""The schema: its root types assembled in one place, for the contract (export.py) and for serving
(`served_schema` adds the limits, the masking and the fast execution)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import strawberry
from graphql.execution import Executor
from strawberry.extensions import SchemaExtension

from gateway.schema import Query


def make_schema(
    extensions: Sequence[Callable[[], SchemaExtension]] = (),
    execution_context_class: type[Executor[Any]] | None = None,
) -> strawberry.Schema:
    return strawberry.Schema(query=Query, extensions=list(extensions), execution_context_class=execution_context_class)


schema = make_schema()
