"""Loading one journey's inputs from the read model into numpy, for one scope (persona, window).

The facts come out of PostgreSQL as binary COPY and are parsed straight into numpy arrays: asyncpg
would build a Python object per value (three million for a million interactions), which alone took
longer than the whole recompute may. No kept library turns asyncpg's COPY into numpy, so
`_copy_array` does it: every column selected is fixed-width and never NULL (COALESCE), so each row
is one record of a numpy structured dtype.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np
from numpy.typing import NDArray

# PostgreSQL's binary COPY: a 19-byte header (signature, flags, header-extension length), then
# per row a 16-bit field count and per field a 32-bit length and the value, then a -1 trailer.
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_PG_EPOCH_SECONDS = 946_684_800.0  # 2000-01-01 in Unix seconds: binary timestamps count from it
_DTYPE = {"int8": ">i8", "int4": ">i4", "int2": ">i2", "float8": ">f8", "timestamptz": ">i8"}


async def _copy_array(conn: asyncpg.Connection, query: str, columns: list[tuple[str, str]], *args: Any) -> Any:
    """The rows of `query` (columns of the named PostgreSQL types, none NULL) as a structured array;
    timestamps become float Unix seconds."""
    chunks: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        chunks.append(chunk)

    await conn.copy_from_query(query, *args, output=sink, format="binary")
    raw = b"".join(chunks)
    if not raw.startswith(_SIGNATURE):
        raise ValueError("not a binary COPY stream")
    (extension,) = struct.unpack(">I", raw[15:19])
    body = memoryview(raw)[19 + extension : len(raw) - 2]  # without header and trailer
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for name, kind in columns:
        fields += [(f"{name}_len", ">i4"), (name, _DTYPE[kind])]
    records = np.frombuffer(body, dtype=np.dtype(fields))
    out: dict[str, NDArray[Any]] = {}
    for name, kind in columns:
        values = records[name]
        if kind == "timestamptz":
            out[name] = values.astype(np.float64) / 1e6 + _PG_EPOCH_SECONDS
        elif kind == "float8":
            out[name] = values.astype(np.float64)
        else:
            out[name] = values.astype(np.int64)
    return out


@dataclass(frozen=True, slots=True)
class Touchpoint:
    id: UUID
    key: str
    name: str
    channel: str
    yearly_cost: Decimal | None
    currency: str
    designed_moment_of_truth: bool
    stages: tuple[str, ...]  # the stage keys it is placed in, in order
    in_last_stage: bool


@dataclass(frozen=True, slots=True)
class Scope:
    persona_id: UUID | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class JourneyInputs:
    """Customers are numbered 0..n-1; touchpoints 0..p-1 in the order of the journey map."""

    journey_id: UUID
    journey_key: str
    touchpoints: list[Touchpoint]
    customers: NDArray[np.int64]  # (n,) the customers' numbers in the read model
    # Interactions, ordered by customer and time.
    touch_customer: NDArray[np.int64]
    touch_touchpoint: NDArray[np.int64]
    touch_time: NDArray[np.float64]
    # Responses of known customers: touchpoint index or -1 for the journey as a whole; -1 = not answered.
    response_customer: NDArray[np.int64]
    response_touchpoint: NDArray[np.int64]
    response_nps: NDArray[np.int64]
    response_csat: NDArray[np.int64]
    response_ces: NDArray[np.int64]
    response_time: NDArray[np.float64]
    # Per customer: the first conversion in the scope, NaN when none; the conversions' value.
    conversion_time: NDArray[np.float64]
    conversion_value: float

    @property
    def n(self) -> int:
        return int(self.customers.size)

    @property
    def p(self) -> int:
        return len(self.touchpoints)


_STEPS = """
SELECT s.touchpoint_id, t.key, t.name, t.channel, t.yearly_cost, t.currency, st.key AS stage, st.position,
       s.position AS step_position, s.moment_of_truth,
       st.position = max(st.position) OVER () AS last_stage
FROM step s JOIN stage st ON st.id = s.stage_id AND NOT st.removed
JOIN touchpoint t ON t.id = s.touchpoint_id AND NOT t.deleted
WHERE s.journey_id = $1 AND s.workspace_id = $2 AND NOT s.removed
ORDER BY st.position, s.position
"""

# Parameters of every query: $1 workspace, $2 the touchpoints (ids or keys) or the conversion names,
# $3/$4 the window, $5 the scope's persona (NULL: everyone), $6 the journey (id or key), $7 the
# customers (NULL: all; a tally's before and after names the few a batch changed). COPY takes no
# parameters: asyncpg inlines them as literals, so `$5 IS NULL` folds away when no persona is set.
_SCOPE = (
    " AND {time} >= coalesce($3, '-infinity'::timestamptz) AND {time} < coalesce($4, 'infinity'::timestamptz)"
    " AND ($5::uuid IS NULL OR {customer} IN (SELECT n FROM customer_ref WHERE workspace_id = $1 AND persona_id = $5))"
    " AND ($7::int8[] IS NULL OR {customer} = ANY($7::int8[]))"
)
_INTERACTIONS = (
    "SELECT i.customer_n, (t.idx - 1)::int8, i.occurred_at FROM interaction i "
    "JOIN unnest($2::uuid[]) WITH ORDINALITY AS t(id, idx) ON i.touchpoint_id = t.id "
    "WHERE i.workspace_id = $1 AND (i.journey_id IS NULL OR i.journey_id = $6::uuid)"
    + _SCOPE.format(time="i.occurred_at", customer="i.customer_n")
    + " ORDER BY i.customer_n, i.occurred_at, i.id"  # a total order: a rebuild reads the same arrays
)
# Responses for the journey (named by key), or for one of its touchpoints with no journey named.
_RESPONSES = (
    "SELECT r.customer_n, coalesce(t.idx - 1, -1)::int8, coalesce(r.nps, -1)::int8, coalesce(r.csat, -1)::int8, "
    "coalesce(r.ces, -1)::int8, r.submitted_at FROM response r "
    "LEFT JOIN unnest($2::text[]) WITH ORDINALITY AS t(key, idx) ON r.touchpoint_key = t.key "
    "WHERE r.workspace_id = $1 AND r.customer_n IS NOT NULL AND ({which})"
    + _SCOPE.format(time="r.submitted_at", customer="r.customer_n")
    + " ORDER BY r.customer_n, r.submitted_at, r.id"
)
_FOR_JOURNEY = "r.journey_key = $6::text"
_FOR_TOUCHPOINTS = "r.journey_key IS NULL AND r.touchpoint_key = ANY($2::text[]) AND $6::text IS NOT NULL"
_CONVERSIONS = (
    "SELECT o.customer_n, min(o.occurred_at), coalesce(sum(o.value), 0)::float8 AS value FROM outcome o "
    "WHERE o.workspace_id = $1 AND o.name = ANY($2::text[]) AND (o.journey_id IS NULL OR o.journey_id = $6::uuid)"
    + _SCOPE.format(time="o.occurred_at", customer="o.customer_n")
    + " GROUP BY o.customer_n"
)
_PERSONA_MEMBERS = (
    "SELECT n FROM customer_ref WHERE workspace_id = $1 AND persona_id = $2 AND ($3::int8[] IS NULL OR n = ANY($3))"
)


async def load_inputs(
    conn: asyncpg.Connection,
    *,
    workspace_id: str,
    journey_id: UUID,
    journey_key: str,
    journey_persona_id: UUID | None,
    scope: Scope,
    conversions: list[str],
    customers: list[int] | None = None,
) -> JourneyInputs:
    """Run inside one REPEATABLE READ transaction, or while nothing can change the journey's facts:
    every query must see the same committed state.
    Customers in the journey: those who met one of its touchpoints or answered for it in the scope,
    and, for a journey of a persona, the persona's customers (as the journey service counts reach).
    `customers`: only these (by their read-model number), as if they were the only ones."""
    touchpoints = await _touchpoints(conn, journey_id, workspace_id)
    ids = [t.id for t in touchpoints]
    keys = [t.key for t in touchpoints]
    window = (scope.since, scope.until, scope.persona_id)
    touches = await _copy_array(
        conn,
        _INTERACTIONS,
        [("customer", "int8"), ("touchpoint", "int8"), ("time", "timestamptz")],
        workspace_id,
        ids,
        *window,
        journey_id,
        customers,
    )
    answered = [
        await _copy_array(
            conn,
            _RESPONSES.format(which=which),
            [(c, "int8") for c in ("customer", "touchpoint", "nps", "csat", "ces")] + [("time", "timestamptz")],
            workspace_id,
            keys,
            *window,
            journey_key,
            customers,
        )
        for which in (_FOR_JOURNEY, _FOR_TOUCHPOINTS)
    ]
    response = {k: np.concatenate([r[k] for r in answered]) for k in answered[0]}
    converted = await _copy_array(
        conn,
        _CONVERSIONS,
        [("customer", "int8"), ("time", "timestamptz"), ("value", "float8")],
        workspace_id,
        conversions,
        *window,
        journey_id,
        customers,
    )
    members = np.empty(0, dtype=np.int64)
    if journey_persona_id is not None and scope.persona_id in (None, journey_persona_id):
        rows = await conn.fetch(_PERSONA_MEMBERS, workspace_id, journey_persona_id, customers)
        members = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    numbers = np.unique(np.concatenate([touches["customer"], response["customer"], members]))
    conversion_time = np.full(numbers.size, np.nan)
    value = 0.0
    if converted["customer"].size:
        conv_customer, conv_time, conv_value = converted["customer"], converted["time"], converted["value"]
        # Only customers who are in the journey convert in it.
        at = np.minimum(np.searchsorted(numbers, conv_customer), max(numbers.size - 1, 0))
        inside = numbers[at] == conv_customer if numbers.size else np.zeros(conv_customer.size, dtype=bool)
        conversion_time[at[inside]] = conv_time[inside]
        value = float(conv_value[inside].sum())
    return JourneyInputs(
        journey_id=journey_id,
        journey_key=journey_key,
        touchpoints=touchpoints,
        customers=numbers,
        touch_customer=np.searchsorted(numbers, touches["customer"]),
        touch_touchpoint=touches["touchpoint"],
        touch_time=touches["time"],
        response_customer=np.searchsorted(numbers, response["customer"]),
        response_touchpoint=response["touchpoint"],
        response_nps=response["nps"],
        response_csat=response["csat"],
        response_ces=response["ces"],
        response_time=response["time"],
        conversion_time=conversion_time,
        conversion_value=value,
    )


async def _touchpoints(conn: asyncpg.Connection, journey_id: UUID, workspace_id: str) -> list[Touchpoint]:
    """The journey's touchpoints in map order; one placed in several stages counts once (its first
    place), designed a moment of truth if any of its steps is."""
    by_id: dict[UUID, dict[str, Any]] = {}
    for row in await conn.fetch(_STEPS, journey_id, workspace_id):
        t = by_id.setdefault(
            row["touchpoint_id"],
            {
                "id": row["touchpoint_id"],
                "key": row["key"],
                "name": row["name"],
                "channel": row["channel"],
                "yearly_cost": row["yearly_cost"],
                "currency": row["currency"],
                "designed_moment_of_truth": False,
                "stages": [],
                "in_last_stage": False,
            },
        )
        t["designed_moment_of_truth"] |= row["moment_of_truth"]
        t["in_last_stage"] |= row["last_stage"]
        if row["stage"] not in t["stages"]:
            t["stages"].append(row["stage"])
    return [Touchpoint(**{**t, "stages": tuple(t["stages"])}) for t in by_id.values()]
