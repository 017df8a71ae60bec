"""Hooks of the schemathesis CLI run by tests/contracts.py (loaded through SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

import json
from typing import Any

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    """Import endpoints take NDJSON: a generated list becomes one JSON document per line."""
    items = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


@schemathesis.serializer("text/csv")
def _csv(ctx: Any, value: Any) -> bytes:
    return (
        value.encode() if isinstance(value, str) else value if isinstance(value, bytes) else json.dumps(value).encode()
    )
