"""What a document may cost, counted before it runs: every field 1, times the items its list can hold.
A field with a `first` argument (a connection, a page) holds `first` items, so `journeys(first: 100)`
costs 100 times its node; another list is taken to hold `assumed_list_size` items (stages, steps);
a connection's `edges` are the page already counted. Fragments count as what they select; the
types of a union or interface all count (an upper bound).

Counted once the variables are known (a validation rule could not read `first: $n`), so it is a
schema extension that answers before execution. No library keeps a cost analysis for graphql-core
(strawberry has depth, alias and token limits; graphql-core none), so it is written here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import (
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLNamedType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
    get_operation_ast,
    is_list_type,
    is_non_null_type,
    value_from_ast,
)
from strawberry.extensions import SchemaExtension


class CostLimiter(SchemaExtension):
    def __init__(self, *, max_cost: int, assumed_list_size: int) -> None:
        self.max_cost, self.assumed_list_size = max_cost, assumed_list_size

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        document = ctx.graphql_document
        operation = get_operation_ast(document, ctx.operation_name) if document else None
        if document is not None and operation is not None:
            cost = Cost(ctx.schema._schema, document.definitions, ctx.variables or {}, self.assumed_list_size)
            total = cost.of_operation(operation)
            if total > self.max_cost:
                error = GraphQLError(
                    f"This query would cost {total}, more than the limit of {self.max_cost}: ask for fewer "
                    "items (`first`) or fewer fields, or split it.",
                    extensions={"code": "COST_LIMIT", "cost": total, "limit": self.max_cost},
                )
                ctx.result = ExecutionResult(data=None, errors=[error])
        yield


class Cost:
    def __init__(
        self, schema: GraphQLSchema, definitions: Any, variables: dict[str, Any], assumed_list_size: int
    ) -> None:
        self.schema, self.variables, self.assumed = schema, variables, assumed_list_size
        self.fragments = {d.name.value: d for d in definitions if isinstance(d, FragmentDefinitionNode)}

    def of_operation(self, operation: OperationDefinitionNode) -> int:
        root = self.schema.get_root_type(operation.operation)
        return self.of_selection(operation.selection_set, root) if root else 0

    def of_selection(
        self, selection_set: SelectionSetNode, parent: GraphQLNamedType, seen: frozenset[str] = frozenset()
    ) -> int:
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.of_field(selection, parent, seen)
            elif isinstance(selection, InlineFragmentNode):
                condition = (
                    self.schema.get_type(selection.type_condition.name.value) if selection.type_condition else None
                )
                total += self.of_selection(selection.selection_set, condition or parent, seen)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None:
                    condition = self.schema.get_type(fragment.type_condition.name.value)
                    total += self.of_selection(
                        fragment.selection_set, condition or parent, seen | {fragment.name.value}
                    )
        return total

    def of_field(self, node: FieldNode, parent: GraphQLNamedType, seen: frozenset[str]) -> int:
        fields = getattr(parent, "fields", None)
        field = fields.get(node.name.value) if fields else None
        if field is None:  # __typename and introspection
            return 1
        inner = get_named_type(field.type)
        below = self.of_selection(node.selection_set, inner, seen) if node.selection_set else 0
        return (1 + below) * self.items(node, field)

    def items(self, node: FieldNode, field: Any) -> int:
        first = field.args.get("first")
        if first is not None:
            given = next((a.value for a in node.arguments or () if a.name.value == "first"), None)
            value = value_from_ast(given, first.type, self.variables) if given is not None else first.default_value
            return max(int(value), 0) if isinstance(value, int) else self.assumed
        returns = field.type.of_type if is_non_null_type(field.type) else field.type
        if is_list_type(returns) and node.name.value != "edges":  # edges: the page counted by `first`
            return self.assumed
        return 1
