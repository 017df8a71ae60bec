"""Base of the journey service's tables and shapes (own registry, so Alembic sees only ours)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import sqlmodel
from pydantic import ConfigDict, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from services.common.kit_tables import define_kit_tables
from services.common.validation import InputModel

KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,79}$"
KEY_HELP = "Stable identifier you choose: lowercase letters, digits, '_', '.', '-' (max 80)."


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
