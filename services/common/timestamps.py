"""The times every service accepts: ISO 8601 text within documented bounds, the same everywhere.

Bounds keep every stored time inside what both PostgreSQL and Python can compute with (a year-9999
time plus a cool-down interval overflowed Python's datetime: a 500). Numbers are refused: pydantic
would read `0.5` as seconds since 1970, which no client means.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)  # exclusive
BOUNDS_HELP = "ISO 8601, from 1900-01-01T00:00:00Z up to (not including) 2100-01-01T00:00:00Z"


def _iso_text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time text, such as 2026-12-02T09:30:00Z")
    try:
        float(value)
    except ValueError:
        return value
    raise ValueError("must be an ISO 8601 date-time text, such as 2026-12-02T09:30:00Z, not a number")


def within_bounds(value: datetime) -> datetime:
    """The time in UTC (a time without zone is UTC); ValueError outside [EARLIEST, LATEST)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    message = f"must be from {EARLIEST:%Y-%m-%d} up to (not including) {LATEST:%Y-%m-%d}"
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError(message) from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError(message)
    return utc


def _zone_given(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must carry a time zone offset, such as Z or +01:00")
    return value


# A time in a request body: with a zone offset, within the bounds, returned in UTC.
Timestamp = Annotated[
    datetime,
    BeforeValidator(_iso_text),
    AfterValidator(_zone_given),
    AfterValidator(within_bounds),
    Field(description=f"Date-time with a zone offset; {BOUNDS_HELP}."),
]
# A time in a query parameter (a range bound): a time without zone is UTC.
TimeQuery = Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(within_bounds)]


_RENDER = TypeAdapter(datetime)


def iso(value: datetime) -> str:
    """A time as every response and event renders it (pydantic's form: UTC as `Z`), for the few
    times written into free-form JSON by hand."""
    return _RENDER.dump_python(value.astimezone(UTC), mode="json")  # type: ignore[no-any-return]
