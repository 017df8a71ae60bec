"""Input shapes that PostgreSQL can store and events can carry: no NUL characters, no unpaired
surrogates, free-form JSON of a bounded size."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, field_validator

# Free-form fields (an interaction's `properties`, a customer's `profile`, a response's `metadata`)
# travel in events; bounded, any one item fits an event many times over (events.MAX_EVENT_BYTES).
FREEFORM_MAX_BYTES = 16 * 1024


def check_freeform_size(value: Any) -> Any:
    """A pydantic after-validator: refuse free-form JSON over FREEFORM_MAX_BYTES (as compact JSON)."""
    size = len(orjson.dumps(value))
    if size > FREEFORM_MAX_BYTES:
        raise ValueError(f"is {size} bytes of JSON; at most {FREEFORM_MAX_BYTES} are accepted")
    return value


def _check_storable(value: Any) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain the NUL character (\\u0000)")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text must be valid Unicode (it contains an unpaired surrogate)") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_storable(k)
            _check_storable(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _check_storable(v)


class InputModel(BaseModel):
    """Base of every request body: unknown fields are refused, all text must be storable."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        _check_storable(value)
        return value
