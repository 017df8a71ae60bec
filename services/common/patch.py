"""PATCH bodies, one rule in every service: a field left out keeps its value; `null` clears a field
whose schema allows null; a `NotNull` field refuses null with a 422 naming it, and its schema says so."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, BeforeValidator

PATCH_HELP = (
    "Only the fields sent change. `null` clears a field that may be empty (its schema allows null); "
    "the other fields refuse it (422): leave a field out to keep its value."
)


def _refuse_null(value: Any) -> Any:
    if value is None:
        raise ValueError("cannot be null; leave the field out to keep its current value")
    return value


# `Annotated[T | None, NotNull] = None`: left out it is None (no change); sent as null it is a 422.
# A before-validator runs only for a field that was sent, so the field stays optional.
NotNull = BeforeValidator(_refuse_null)


def patch_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """`json_schema_extra` of a PATCH model: a NotNull field is not nullable and has no default."""
    schema.setdefault("description", PATCH_HELP)
    for name, field in model.model_fields.items():
        prop = schema.get("properties", {}).get(name)
        if prop is None or NotNull not in field.metadata:
            continue
        prop.pop("default", None)
        options = [o for o in prop.pop("anyOf", []) if o != {"type": "null"}]
        if len(options) == 1:
            prop.update(options[0])
        elif options:
            prop["anyOf"] = options
