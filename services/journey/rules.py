"""The persona assignment language: declarative conditions over a customer's profile attributes.

    {"all": [{"attribute": "segment", "op": "eq", "value": "b2c"},
             {"any": [{"attribute": "country", "op": "in", "value": ["DE", "AT"]},
                      {"attribute": "age", "op": "gte", "value": 30}]}]}

Attributes may be dotted paths into nested profile objects ("address.country").
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Discriminator, Field, Tag, model_validator

from services.common.validation import InputModel

Op = Literal["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists", "contains"]
_MISSING = object()


class AttributeCondition(InputModel):
    model_config = ConfigDict(extra="forbid")
    attribute: str = Field(min_length=1, max_length=200, examples=["segment"])
    op: Op
    value: Any = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> AttributeCondition:
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"op {self.op!r} needs a list value")
        if self.op in ("gt", "gte", "lt", "lte") and (
            isinstance(self.value, bool) or not isinstance(self.value, int | float | str)
        ):
            raise ValueError(f"op {self.op!r} needs a number or string value")
        if self.op == "exists" and not isinstance(self.value, bool | None):
            raise ValueError("op 'exists' takes true, false or no value")
        return self

    def evaluate(self, profile: dict[str, Any]) -> bool:
        actual = _lookup(profile, self.attribute)
        if self.op == "exists":
            return (actual is not _MISSING) == (self.value is not False)
        if actual is _MISSING:
            return self.op in ("ne", "not_in")
        match self.op:
            case "eq":
                return bool(actual == self.value)
            case "ne":
                return bool(actual != self.value)
            case "in":
                return actual in self.value
            case "not_in":
                return actual not in self.value
            case "contains":
                if isinstance(actual, str):
                    return isinstance(self.value, str) and self.value in actual
                return isinstance(actual, list) and self.value in actual
        return _compare(actual, self.op, self.value)


class AllCondition(InputModel):
    model_config = ConfigDict(extra="forbid")
    all: list[Condition] = Field(min_length=1)

    def evaluate(self, profile: dict[str, Any]) -> bool:
        return all(c.evaluate(profile) for c in self.all)


class AnyCondition(InputModel):
    model_config = ConfigDict(extra="forbid")
    any: list[Condition] = Field(min_length=1)

    def evaluate(self, profile: dict[str, Any]) -> bool:
        return any(c.evaluate(profile) for c in self.any)


class NotCondition(InputModel):
    model_config = ConfigDict(extra="forbid", validate_by_name=True, serialize_by_alias=True)
    not_: Condition = Field(alias="not")

    def evaluate(self, profile: dict[str, Any]) -> bool:
        return not self.not_.evaluate(profile)


def _condition_kind(value: Any) -> str | None:
    """The union member a condition is; None (a validation error) for anything but an object."""
    if isinstance(value, dict):
        source = value
    elif isinstance(value, AttributeCondition | AllCondition | AnyCondition | NotCondition):
        source = value.__dict__
    else:
        return None
    for kind in ("all", "any", "not"):
        if kind in source or (kind == "not" and "not_" in source):
            return kind
    return "attribute"


MAX_DEPTH = 16


def _depth(value: Any) -> int:
    """How deeply `all` / `any` / `not` nest in a condition as sent (iterative: no recursion limit)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        node, depth = todo.pop()
        deepest = max(deepest, depth)
        if isinstance(node, dict):
            for kind in ("all", "any", "not"):
                inner = node.get(kind)
                todo.extend((c, depth + 1) for c in (inner if isinstance(inner, list) else [inner]) if c is not None)
    return deepest


def _shallow(value: Any) -> Any:
    if _depth(value) > MAX_DEPTH:
        raise ValueError(f"conditions may nest at most {MAX_DEPTH} levels deep")
    return value


# A callable discriminator picks the one member that applies, so an invalid rule gets one clear
# error instead of one per union member.
Condition = Annotated[
    Annotated[AttributeCondition, Tag("attribute")]
    | Annotated[AllCondition, Tag("all")]
    | Annotated[AnyCondition, Tag("any")]
    | Annotated[NotCondition, Tag("not")],
    Discriminator(
        _condition_kind,
        custom_error_type="condition_shape",
        custom_error_message="a condition must be an object: {attribute, op, value}, {all: [...]}, {any: [...]} "
        "or {not: {...}}",
    ),
]
# A rule's condition as sent: bounded nesting, so neither validation nor evaluation can recurse
# past Python's limit (a 500).
RuleCondition = Annotated[Condition, BeforeValidator(_shallow)]
for _model in (AllCondition, AnyCondition, NotCondition):
    _model.model_rebuild()


def _lookup(profile: dict[str, Any], path: str) -> Any:
    current: Any = profile
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            return _MISSING
        current = current[part]
    return current


_ORDER = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


def _compare(actual: Any, op: str, expected: Any) -> bool:
    # Numbers compare with numbers, strings with strings (ISO dates order correctly);
    # anything else does not match rather than raising on a customer's odd profile.
    numeric = (int, float)
    if isinstance(actual, bool) or not (
        (isinstance(actual, numeric) and isinstance(expected, numeric))
        or (isinstance(actual, str) and isinstance(expected, str))
    ):
        return False
    return bool(_ORDER[op](actual, expected))
