"""Base of the journey service's tables and shapes (own registry, so Alembic sees only ours)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

import sqlalchemy as sa
import sqlmodel
from pydantic import BeforeValidator, ConfigDict, WithJsonSchema
from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from services.common.kit_tables import define_kit_tables
from services.common.patch import patch_schema
from services.common.validation import InputModel

KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,79}$"
KEY_HELP = "Stable identifier you choose: lowercase letters, digits, '_', '.', '-' (max 80)."


def _decimal_text(pattern: str, example: str) -> BeforeValidator:
    def text(value: Any) -> Any:
        if isinstance(value, Decimal):  # a stored amount, read back
            value = str(value)
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise ValueError(f"must be a decimal string such as {example!r} (pattern {pattern})")
        return value

    return BeforeValidator(text)


# Exact amounts are one type, a decimal string ("520000.00"), never a JSON number: a float's rounding
# would change the amount, and the OpenAPI says what the server reads.
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


class Patch(Shape):
    """Base of PATCH bodies (services/common/patch.py)."""

    model_config = ConfigDict(json_schema_extra=patch_schema)
