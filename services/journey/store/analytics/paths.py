"""GET /v1/journeys/{id}/paths: the top-k paths through stages or touchpoints, as a Sankey.

Each customer's events in the journey, ordered by `occurred_at`, become one path of node keys
(stage keys or touchpoint keys). `collapse` decides what counts as a loop: `repeats` folds
consecutive repeats (A A B → A B), `revisits` keeps only the first visit of each node
(A B A C → A B C), `none` keeps every event. Paths are cut after `max_length` nodes.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.journey.models import Collapse, PathCount, PathLevel, Paths, SankeyLink, SankeyNode, Source, SourceChoice
from services.journey.store.analytics import rollup
from services.journey.store.analytics._scope import bind_range, count_before, event_filter, journey_scope, time_range

_NODES = {
    # A touchpoint placed in two stages of the journey appears once per event at the touchpoint level
    # and once per stage at the stage level (ordered by stage position).
    PathLevel.touchpoints: """
    SELECT DISTINCT st.touchpoint_id, t.key AS node, 0 AS rank
    FROM journey_step st JOIN touchpoint t ON t.id = st.touchpoint_id
    WHERE st.journey_id = :j AND st.workspace_id = :w""",
    PathLevel.stages: """
    SELECT DISTINCT st.touchpoint_id, s.key AS node, s.position AS rank
    FROM journey_step st JOIN stage s ON s.id = st.stage_id
    WHERE st.journey_id = :j AND st.workspace_id = :w""",
}
_KEEP = {
    Collapse.none: "true",
    Collapse.repeats: "prev_node IS DISTINCT FROM node",
    Collapse.revisits: "visit = 1",
}


def events_sql(name: str, nodes: str, filters: str, interactions: str = "interaction i") -> str:
    """The journey's events as nodes of `nodes`, with what each collapse mode needs."""
    return f"""{name} AS (
    SELECT i.customer_id, {nodes}.node, i.occurred_at, {nodes}.rank,
           lag({nodes}.node) OVER w AS prev_node,
           row_number() OVER (PARTITION BY i.customer_id, {nodes}.node ORDER BY i.occurred_at, {nodes}.rank) AS visit
    FROM {interactions} JOIN {nodes} ON {nodes}.touchpoint_id = i.touchpoint_id
    WHERE true{filters}
    WINDOW w AS (PARTITION BY i.customer_id ORDER BY i.occurred_at, {nodes}.rank, {nodes}.node)
)"""


PATH_TIMES = "array_agg(occurred_at ORDER BY occurred_at, rank, node)"  # aligned with the uncollapsed path


def path_sql(collapse: Collapse, length: str | None = "CAST(:max_length AS int)") -> str:
    """One customer's path in a GROUP BY customer_id over the events (cut after `length` nodes)."""
    keep = "" if collapse == Collapse.none else f" FILTER (WHERE {_KEEP[collapse]})"
    path = f"array_agg(node ORDER BY occurred_at, rank, node){keep}"
    return path if length is None else f"({path})[1:{length}]"


def nodes_sql(level: PathLevel, name: str = "nodes") -> str:
    return f"{name} AS ({_NODES[level]})"


def top_paths_sql(per_customer: str) -> str:
    """The top :k paths with their counts and the total, from a query of one `path` per customer."""
    return f"""
SELECT path, count(*) AS n, sum(count(*)) OVER () AS total
FROM ({per_customer}) per_customer
GROUP BY path ORDER BY n DESC, path LIMIT :k
"""


def paths_sql(level: PathLevel, collapse: Collapse, filters: str) -> str:
    return f"""
WITH {nodes_sql(level)},
{events_sql("ev", "nodes", filters)}
{top_paths_sql(f"SELECT customer_id, {path_sql(collapse)} AS path FROM ev GROUP BY customer_id")}"""


def rollup_paths_sql(level: PathLevel, collapse: Collapse) -> str:
    """The same counts over the projection's per-customer paths (rollup.py)."""
    return top_paths_sql(
        f"SELECT cj.{level.value}_{collapse.value}[1:CAST(:max_length AS int)] AS path FROM customer_journey cj "
        "WHERE cj.workspace_id = :w AND cj.journey_id = :j"
    )


# A path cut to a time range, collapsed (`s.nodes`: the customer's nodes in the range, in order).
_COLLAPSE_SLICE = {
    Collapse.none: "s.nodes",
    Collapse.repeats: "(SELECT array_agg(x ORDER BY n) FROM unnest(s.nodes) WITH ORDINALITY u(x, n) "
    "WHERE n = 1 OR x IS DISTINCT FROM s.nodes[n - 1])",
    Collapse.revisits: "(SELECT array_agg(x ORDER BY n) FROM (SELECT x, min(n) AS n "
    "FROM unnest(s.nodes) WITH ORDINALITY u(x, n) GROUP BY x) first_visits)",
}


def rollup_range_paths_sql(level: PathLevel, collapse: Collapse, *, since: bool, until: bool) -> str:
    """The same counts in a time range over the projection's per-customer nodes and times: the nodes in
    the range are a slice (the times are sorted: two binary searches), collapsed per customer: one
    row per customer instead of every event (docs/engineering-notes.md has the timings)."""
    nodes, times = f"cj.{level.value}_{Collapse.none.value}", f"cj.{level.value}_times"
    first = f"{count_before('CAST(:since AS timestamptz)', times)} + 1" if since else "1"
    last = count_before("CAST(:until AS timestamptz)", times) if until else f"cardinality({times})"
    return top_paths_sql(f"""SELECT ({_COLLAPSE_SLICE[collapse]})[1:CAST(:max_length AS int)] AS path
      FROM (SELECT ({nodes}[{first} : {last}]) AS nodes FROM customer_journey cj
            WHERE cj.workspace_id = :w AND cj.journey_id = :j OFFSET 0) s
      WHERE cardinality(s.nodes) > 0""")


async def journey_paths(
    session: AsyncSession,
    *,
    workspace_id: str,
    journey_id: Any,
    level: PathLevel,
    collapse: Collapse,
    top: int,
    max_length: int,
    since: datetime | None,
    until: datetime | None,
    source: SourceChoice = SourceChoice.auto,
) -> Paths:
    scope = await journey_scope(session, workspace_id=workspace_id, journey_id=journey_id)
    since, until = time_range(since, until)
    params: dict[str, Any] = {"w": workspace_id, "j": journey_id, "k": top, "max_length": max_length}
    answered_from: Source = "events"
    sql: str | None = None
    if source == SourceChoice.auto:
        # As it is (complete up to `as_of`); never built: no paths yet.
        projected = await rollup.projected(
            session, workspace_id=workspace_id, journey_id=journey_id, current=scope.stages
        )
        answered_from, as_of = "projection", projected.as_of
        if projected.stages is None:
            pass
        elif rollup.answers(since=since, until=until):
            sql = rollup_paths_sql(level, collapse)
        else:
            bind_range(params, since, until)
            sql = rollup_range_paths_sql(level, collapse, since=since is not None, until=until is not None)
    else:
        sql, as_of = paths_sql(level, collapse, event_filter("i", since, until, params)), datetime.now(UTC)
    rows = (await session.execute(sa.text(sql), params)).all() if sql is not None else []
    total = int(rows[0].total) if rows else 0
    paths = [PathCount(nodes=list(r.path), customers=r.n, share=r.n / total) for r in rows]
    # The Sankey is drawn from the top-k paths (at most k × max_length nodes): no row data here.
    node_counts: Counter[tuple[int, str]] = Counter()
    link_counts: Counter[tuple[str, str]] = Counter()
    for p in paths:
        for depth, key in enumerate(p.nodes):
            node_counts[(depth, key)] += p.customers
            if depth:
                link_counts[(f"{depth - 1}:{p.nodes[depth - 1]}", f"{depth}:{key}")] += p.customers
    return Paths(
        journey_id=journey_id,
        level=level,
        collapse=collapse,
        customers=total,
        other_customers=total - sum(p.customers for p in paths),
        paths=paths,
        nodes=[SankeyNode(id=f"{d}:{k}", key=k, depth=d, customers=n) for (d, k), n in sorted(node_counts.items())],
        links=[SankeyLink(source=s, target=t, customers=n) for (s, t), n in sorted(link_counts.items())],
        source=answered_from,
        as_of=as_of,
    )
