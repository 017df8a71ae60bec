"""Base of the journey service's tables and shapes (own registry, so Alembic sees only ours)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import sqlmodel
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
