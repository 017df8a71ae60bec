"""The counts and sums of one journey scope (`Tally`): what its descriptive scores are made of, and
what can be kept incrementally.

Every entry is a sum over customers of what that customer contributes (their touches, answers and
conversion in the scope), so the tally of all customers is the sum of the tallies of any split of
them. That is what lets the read model's consumers keep it: when a batch of events changes some
customers, the tally moves by `tally_of(their inputs after) - tally_of(their inputs before)`, and a
score follows its events without reloading or refitting the journey (`compute.refresh_scores`).
The full recompute takes its counts from `tally_of` too: one definition of every count.

All entries are integers (the answers are integer scales), so a tally kept by deltas equals the one
counted from scratch exactly, in any order.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped]
from numpy.typing import NDArray

from services.scoring.inputs import JourneyInputs

I64 = NDArray[np.int64]


def latest(keys: I64, times: NDArray[np.float64]) -> I64:
    """Index of the latest row per key."""
    order = np.lexsort((times, keys))
    last = np.ones(order.size, dtype=bool)
    last[:-1] = keys[order][1:] != keys[order][:-1]
    return order[last]


def indicator(rows: I64, cols: I64, n: int, p: int) -> Any:
    """The n x p 0/1 matrix with a 1 where any (row, col) pair occurs."""
    m = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, p))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


@dataclass(frozen=True, slots=True)
class Tally:
    """Counts of one scope over the touchpoints of its journey map (in map order)."""

    customers: int
    interactions: int
    responses: int
    conversions: int
    completed: int  # converted, or met a touchpoint of the last stage
    categories: I64  # (3,) customers whose latest likelihood to recommend is promoter, passive, detractor
    journey_ces: I64  # (3,) CES answers of the journey: n, Σ, Σ²
    reach_n: I64  # (p,) customers who met it
    satisfied: I64  # (p,) CSAT answers of 4-5
    rated: I64  # (p,) CSAT answers
    ces: I64  # (p, 3) CES answers there: n, Σ, Σ²
    bad: I64  # (p, 3) customers with a bad experience there, by NPS category
    others: I64  # (p, 3) customers who met it without one, by NPS category

    @property
    def p(self) -> int:
        return int(self.reach_n.size)

    def to_vector(self) -> list[int]:
        """One flat list (the read model stores it as bigint[]: deltas add element-wise in SQL)."""
        flat: list[int] = np.concatenate([np.ravel(getattr(self, f.name)) for f in fields(self)]).tolist()
        return flat

    @classmethod
    def from_vector(cls, vector: list[int] | I64, p: int) -> Tally:
        v = np.asarray(vector, dtype=np.int64)
        if v.size != vector_size(p):
            raise ValueError(f"a tally of {p} touchpoints has {vector_size(p)} entries, not {v.size}")
        out: dict[str, Any] = {}
        at = 0
        for f in fields(cls):
            shape = _SHAPES[f.name](p)
            size = int(np.prod(shape)) if shape else 1
            part = v[at : at + size]
            out[f.name] = int(part[0]) if not shape else part.reshape(shape)
            at += size
        return cls(**out)

    def __add__(self, other: Tally) -> Tally:
        return Tally.from_vector(np.add(self.to_vector(), other.to_vector()), self.p)

    def __sub__(self, other: Tally) -> Tally:
        return Tally.from_vector(np.subtract(self.to_vector(), other.to_vector()), self.p)


_SHAPES: dict[str, Any] = {
    "customers": lambda p: (),
    "interactions": lambda p: (),
    "responses": lambda p: (),
    "conversions": lambda p: (),
    "completed": lambda p: (),
    "categories": lambda p: (3,),
    "journey_ces": lambda p: (3,),
    "reach_n": lambda p: (p,),
    "satisfied": lambda p: (p,),
    "rated": lambda p: (p,),
    "ces": lambda p: (p, 3),
    "bad": lambda p: (p, 3),
    "others": lambda p: (p, 3),
}


def vector_size(p: int) -> int:
    return 5 + 3 + 3 + 3 * p + 3 * 3 * p


def empty(p: int) -> Tally:
    return Tally.from_vector(np.zeros(vector_size(p), dtype=np.int64), p)


@dataclass(frozen=True, slots=True)
class Customers:
    """Per customer of the inputs: what the models need besides the tally."""

    exposure: Any  # (n, p) csr: met the touchpoint in the scope
    ltr: NDArray[np.float64]  # (n,) latest likelihood to recommend, NaN: not answered
    converted: NDArray[np.bool_]  # (n,)
    categories: NDArray[np.bool_]  # (n, 3) promoter, passive, detractor


def customers_of(inputs: JourneyInputs) -> Customers:
    n, p = inputs.n, inputs.p
    rc = inputs.response_customer
    has_nps = inputs.response_nps >= 0
    last = latest(rc[has_nps], inputs.response_time[has_nps])
    ltr = np.full(n, np.nan)
    ltr[rc[has_nps][last]] = inputs.response_nps[has_nps][last]
    rated = ~np.isnan(ltr)
    categories = np.stack([rated & (ltr >= 9), rated & (ltr >= 7) & (ltr <= 8), rated & (ltr <= 6)], 1)
    return Customers(
        exposure=indicator(inputs.touch_customer, inputs.touch_touchpoint, n, p),
        ltr=ltr,
        converted=~np.isnan(inputs.conversion_time),
        categories=categories,
    )


def tally_of(inputs: JourneyInputs, customers: Customers | None = None) -> Tally:
    """The tally of the inputs' customers (`customers`: `customers_of(inputs)`, when already at hand)."""
    per = customers if customers is not None else customers_of(inputs)
    n, p = inputs.n, inputs.p
    rc, rt = inputs.response_customer, inputs.response_touchpoint
    csat, ces = inputs.response_csat, inputs.response_ces

    in_last = np.array([tp.in_last_stage for tp in inputs.touchpoints], dtype=bool)
    completed = per.converted.copy()
    if in_last.any():
        completed |= np.asarray(per.exposure[:, in_last].sum(axis=1)).ravel() > 0

    at_tp = rt >= 0
    csat_answers = at_tp & (csat >= 1)
    ces_answers = at_tp & (ces >= 1)
    ces_at = ces[ces_answers]
    journey_ces = ces[ces >= 1]

    # Failure impact: customers with a bad experience there, and the others who met it, by NPS category.
    bad_answer = at_tp & (((csat >= 1) & (csat <= 2)) | (ces >= 5))
    bad = indicator(rc[bad_answer], rt[bad_answer], n, p)
    cat = per.categories.astype(np.float64)
    met_not_bad = per.exposure - per.exposure.multiply(bad)

    def count(x: Any) -> I64:
        counted: I64 = np.rint(np.asarray(x)).astype(np.int64)
        return counted

    return Tally(
        customers=n,
        interactions=int(inputs.touch_customer.size),
        responses=int(rc.size),
        conversions=int(per.converted.sum()),
        completed=int(completed.sum()),
        categories=per.categories.sum(axis=0).astype(np.int64),
        journey_ces=np.array([journey_ces.size, journey_ces.sum(), (journey_ces**2).sum()], dtype=np.int64),
        reach_n=count(per.exposure.sum(axis=0)).ravel(),
        satisfied=np.bincount(rt[csat_answers], weights=csat[csat_answers] >= 4, minlength=p).astype(np.int64),
        rated=np.bincount(rt[csat_answers], minlength=p).astype(np.int64),
        ces=np.stack(
            [
                np.bincount(rt[ces_answers], minlength=p),
                np.bincount(rt[ces_answers], weights=ces_at, minlength=p),
                np.bincount(rt[ces_answers], weights=ces_at**2, minlength=p),
            ],
            1,
        ).astype(np.int64),
        bad=count(bad.T @ cat),
        others=count(met_not_bad.T @ cat),
    )
