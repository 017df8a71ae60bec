"""Base of the feedback service's tables and shapes (own registry, so Alembic sees only ours)."""

from __future__ import annotations

import enum
from typing import Annotated, Any

import sqlalchemy as sa
import sqlmodel
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from services.common.kit_tables import define_kit_tables
from services.common.patch import patch_schema

KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,79}$"
KEY_HELP = "Stable identifier you choose: lowercase letters, digits, '_', '.', '-' (max 80)."
LANGUAGE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"

Key = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
Language = Annotated[str, StringConstraints(pattern=LANGUAGE_PATTERN)]
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class FeedbackTable(SQLModel, registry=registry()):
    """Base of this service's tables: its own MetaData, so Alembic sees only feedback tables."""


define_kit_tables(FeedbackTable.metadata)


class Shape(BaseModel):
    """Request and response shapes are plain pydantic models (SQLModel's Field drops `pattern`)."""

    model_config = ConfigDict(extra="forbid")


class Patch(Shape):
    """Base of PATCH bodies (services/common/patch.py)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=patch_schema)


class PublicShape(BaseModel):
    model_config = ConfigDict(extra="ignore", from_attributes=True)


def now_column() -> Any:
    return sa.Column(sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def version_column() -> Any:
    """An aggregate's version: 1 when created, + 1 with every change (`... SET version = version + 1`)."""
    return sqlmodel.Field(default=1, sa_type=sa.BigInteger, sa_column_kwargs={"server_default": "1"})


VERSION_HELP = "Increases with every change; events carry it, so a consumer can drop an outdated one."


def enum_type(enum_cls: type[enum.Enum], name: str) -> sa.Enum:
    return sa.Enum(enum_cls, name=name, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e])
