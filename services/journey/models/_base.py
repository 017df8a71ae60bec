"""Base of the journey service's tables and shapes (own registry, so Alembic sees only ours)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

import sqlalchemy as sa
import sqlmodel
from pydantic import BeforeValidator, ConfigDict, ValidationInfo, WithJsonSchema, field_validator
from pydantic.fields import FieldInfo
from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from services.common.kit_tables import define_kit_tables
from services.common.validation import InputModel

KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,79}$"
KEY_HELP = "Stable identifier you choose: lowercase letters, digits, '_', '.', '-' (max 80)."


def _decimal_text(pattern: str, example: str) -> BeforeValidator:
    def text(value: Any) -> Any:
        if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise ValueError(f"must be a decimal string such as {example!r} (pattern {pattern})")
        return value

    return BeforeValidator(text)


# Exact amounts are documented as one type, a decimal string ("520000.00", never a float's
# rounding); a JSON number is still read, as clients sent before the type was documented.
MONEY_PATTERN = r"^\d{1,12}(\.\d{1,2})?$"
Money = Annotated[
    Decimal,
    _decimal_text(MONEY_PATTERN, "520000.00"),
    WithJsonSchema({"type": "string", "pattern": MONEY_PATTERN, "examples": ["520000.00"]}),
]
AMOUNT_PATTERN = r"^-?\d{1,14}(\.\d{1,4})?$"
Amount = Annotated[
    Decimal,
    _decimal_text(AMOUNT_PATTERN, "129.90"),
    WithJsonSchema({"type": "string", "pattern": AMOUNT_PATTERN, "examples": ["129.90"]}),
]


class JourneyTable(SQLModel, registry=registry()):
    """Base of this service's tables: its own MetaData, so Alembic sees only journey tables."""


define_kit_tables(JourneyTable.metadata)


class Shape(InputModel):
    """Request and response shapes are plain pydantic models (SQLModel's Field drops `pattern`)."""


def now_column() -> Any:
    return sa.Column(sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def version_column() -> Any:
    """An aggregate's version: 1 when created, + 1 with every change (`... SET version = version + 1`)."""
    return sqlmodel.Field(default=1, sa_type=sa.BigInteger, sa_column_kwargs={"server_default": "1"})


VERSION_HELP = "Increases with every change; events carry it, so a consumer can drop an outdated one."


class _NotNull:
    """Marks a PATCH field that refuses null: `Annotated[str | None, NOT_NULL]` (None = not sent)."""

    def __repr__(self) -> str:
        return "NOT_NULL"


NOT_NULL = _NotNull()
PATCH_HELP = (
    "Only the fields sent change. `null` clears a field that may be empty (its schema allows null); "
    "the other fields refuse it (422): leave a field out to keep its value."
)


def _not_null(field: FieldInfo) -> bool:
    return any(isinstance(m, _NotNull) for m in field.metadata)


def _patch_schema(schema: dict[str, Any], model: type[Any]) -> None:
    # The schema says what the validator does: a NOT_NULL field is not nullable and has no default.
    schema.setdefault("description", PATCH_HELP)
    for name, field in model.model_fields.items():
        prop = schema.get("properties", {}).get(name)
        if prop is None or not _not_null(field):
            continue
        prop.pop("default", None)
        options = [o for o in prop.pop("anyOf", []) if o != {"type": "null"}]
        if len(options) == 1:
            prop.update(options[0])
        elif options:
            prop["anyOf"] = options


class PatchShape(Shape):
    """Base of PATCH bodies (PATCH_HELP)."""

    model_config = ConfigDict(json_schema_extra=_patch_schema)

    @field_validator("*", mode="before")
    @classmethod
    def _null_only_where_clearable(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name and _not_null(cls.model_fields[info.field_name]):
            raise ValueError("cannot be null; leave the field out to keep its current value")
        return value
