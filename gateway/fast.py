"""Fast completion of what the unified view returns most: lists and objects whose selected fields are
plain reads of their parent.

graphql-core completes every returned field on its own (a resolve info, a resolver call through
strawberry's wrappers, a completion step): about 4 µs a field, 0.25 s of CPU for a 10 × 200 map. Here
a selection is compiled once per request into a projection, a tree of getters and output coercions, and
a list of 2,000 steps is completed by running it. A field goes into a projection only when its result
cannot depend on anything but its parent: a strawberry field with no arguments, no field extensions
(permissions are extensions), no `info`, and either no resolver or a synchronous one that reads its
root; leaf, list or object types (no interfaces or unions); no directives but @include/@skip, no
@defer. Anything else (and any schema middleware) is completed by graphql-core as before.

Errors are graphql-core's own: a projection that meets anything unexpected (a resolver raising, a null
in a non-null field, a value its scalar refuses) is dropped and the same value is completed by
graphql-core from the start, which calls the same pure resolvers again and locates the error exactly.
tests/gateway/test_fast.py runs the test query set through both and compares data and errors.

graphql-core has no such mode and strawberry none either (its "basic field" shortcut still completes
each field in graphql-core), so it is written here, against `Executor`'s documented hook: a subclass
passed as the executor class."""

from __future__ import annotations

import contextlib
import math
import operator
from collections.abc import Callable, Iterable
from typing import Any

from graphql import (
    GraphQLField,
    GraphQLLeafType,
    GraphQLList,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    Undefined,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
    specified_scalar_types,
)
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import AwaitableOrValue, Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.field import StrawberryField

Complete = Callable[[Any], Any]
SELECTION_DIRECTIVES = frozenset({"include", "skip"})  # applied by field collection, before completion


class _Unexpected(Exception):
    """Leave this value to graphql-core."""


class FastExecutor(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Projections of this request's selections, by (type, field details): built once, used for
        # every item. The field details are kept so their ids stay theirs.
        self._projections: dict[tuple[int, int], tuple[FieldDetailsList, Complete | None]] = {}
        # A schema extension that wraps resolvers (strawberry passes those as middleware) must see
        # every field: then nothing is projected.
        manager = self.middleware_manager
        self._projecting = manager is None or not manager.middlewares

    def complete_list_value(
        self,
        return_type: GraphQLList[GraphQLOutputType],
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        result: Any,
        position_context: Any,
    ) -> AwaitableOrValue[list[Any]]:
        if self._projecting and isinstance(result, list | tuple):
            complete = self._completion(return_type, field_details_list)
            if complete is not None:
                with contextlib.suppress(Exception):  # graphql-core completes it again and reports the error
                    return complete(result)  # type: ignore[no-any-return]
        return super().complete_list_value(return_type, field_details_list, info, path, result, position_context)

    def complete_object_value(
        self,
        return_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        result: Any,
        position_context: Any,
    ) -> AwaitableOrValue[dict[str, Any]]:
        if self._projecting:
            project = self._projection(return_type, field_details_list)
            if project is not None:
                with contextlib.suppress(Exception):  # as above
                    return project(result)  # type: ignore[no-any-return]
        return super().complete_object_value(return_type, field_details_list, info, path, result, position_context)

    def _projection(self, object_type: GraphQLObjectType, field_details_list: FieldDetailsList) -> Complete | None:
        key = (id(object_type), id(field_details_list))
        known = self._projections.get(key)
        if known is None:
            self._projections[key] = (field_details_list, None)  # not projectable while being built
            known = self._projections[key] = (field_details_list, self._build(object_type, field_details_list))
        return known[1]

    def _build(self, object_type: GraphQLObjectType, field_details_list: FieldDetailsList) -> Complete | None:
        if object_type.is_type_of is not None:
            return None
        grouped_field_set, defer_usages, _ = self.collect_subfields(object_type, field_details_list)
        if defer_usages:
            return None
        fields: list[tuple[str, Callable[[Any], Any], Complete]] = []
        for response_name, details in grouped_field_set.items():
            node = details[0].node
            if node.arguments or any(d.name.value not in SELECTION_DIRECTIVES for d in node.directives or ()):
                return None
            if node.name.value == "__typename":
                fields.append((response_name, _constant(object_type.name), _as_is))
                continue
            field_def = self.schema.get_field(object_type, node.name.value)
            read = _reader(field_def) if field_def is not None else None
            complete = self._completion(field_def.type, details) if field_def is not None else None
            if read is None or complete is None:
                return None
            fields.append((response_name, read, complete))

        def project(source: Any) -> dict[str, Any]:
            return {name: complete(read(source)) for name, read, complete in fields}

        return project

    def _completion(self, return_type: GraphQLOutputType, details: FieldDetailsList) -> Complete | None:
        """How a value of `return_type` is completed for the selection `details`; None when graphql-core
        must do it."""
        non_null = is_non_null_type(return_type)
        inner = return_type.of_type if non_null else return_type  # type: ignore[union-attr]
        complete: Complete
        if is_leaf_type(inner):
            complete = _leaf(inner)

        elif is_list_type(inner):
            item = self._completion(inner.of_type, details)
            if item is None:
                return None

            def complete(value: Iterable[Any]) -> list[Any]:
                if not isinstance(value, list | tuple):
                    raise _Unexpected
                return [item(v) for v in value]

        elif is_object_type(inner):
            project = self._projection(inner, details)
            if project is None:
                return None
            complete = project
        else:
            return None
        return _non_null(complete) if non_null else _nullable(complete)


# What the built-in scalars return unchanged (graphql-core's coercion of these is the identity); any
# other value goes through the type's own coercion.
_AS_THEY_ARE: dict[str, Callable[[Any], bool]] = {
    "String": lambda v: type(v) is str,
    "ID": lambda v: type(v) is str,
    "Boolean": lambda v: type(v) is bool,
    "Int": lambda v: type(v) is int and -(2**31) <= v < 2**31,
    "Float": lambda v: type(v) is float and math.isfinite(v),
}


def _leaf(leaf_type: GraphQLLeafType) -> Complete:
    coerce = leaf_type.coerce_output_value
    unchanged = _AS_THEY_ARE.get(leaf_type.name) if specified_scalar_types.get(leaf_type.name) is leaf_type else None

    def complete(value: Any) -> Any:
        if unchanged is not None and unchanged(value):
            return value
        coerced = coerce(value)
        if coerced is None or coerced is Undefined:
            raise _Unexpected
        return coerced

    return complete


def _constant(value: str) -> Callable[[Any], str]:
    return lambda _: value


def _as_is(value: Any) -> Any:
    return value


def _non_null(complete: Complete) -> Complete:
    def non_null(value: Any) -> Any:
        if value is None:
            raise _Unexpected
        return complete(value)

    return non_null


def _nullable(complete: Complete) -> Complete:
    def nullable(value: Any) -> Any:
        return None if value is None else complete(value)

    return nullable


def _reader(field_def: GraphQLField) -> Callable[[Any], Any] | None:
    """The read of a field from its parent, when it depends on nothing else."""
    field = field_def.extensions.get("strawberry-definition")
    if not isinstance(field, StrawberryField) or field.extensions or field_def.args:
        return None
    if getattr(field_def.resolve, "_is_default", False):  # strawberry's basic field: an attribute
        default, name = field.default_resolver, field.python_name
        return operator.attrgetter(name) if default is getattr else lambda source: default(source, name)
    resolver = field.base_resolver
    if resolver is None or resolver.is_async or resolver.arguments or resolver.info_parameter is not None:
        return None
    if resolver.parent_parameter is not None or resolver.self_parameter is not None:
        return None
    root = resolver.root_parameter
    if root is None:
        return None
    function, name = resolver.wrapped_func, root.name
    if not callable(function):
        return None
    return lambda source: function(**{name: source})
