"""Row ids for bulk writes: UUIDv7 as text.

`uuid_utils.compat.uuid7()` builds a `uuid.UUID` through an int, several times the cost of the
native generator's text form (docs/engineering-notes.md), and asyncpg encodes text into `uuid`
columns and orjson writes it unchanged into events and responses.
Single-row paths keep `uuid7()` (a `uuid.UUID`, what the models declare).
"""

from __future__ import annotations

import uuid_utils


def new_ids(n: int) -> list[str]:
    """n fresh, time-ordered UUIDv7 ids as text."""
    return [str(uuid_utils.uuid7()) for _ in range(n)]
