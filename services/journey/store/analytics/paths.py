"""GET /v1/journeys/{id}/paths: the top-k paths through stages or touchpoints, as a Sankey.

Each customer's events in the journey, ordered by `occurred_at`, become one path of node keys
(stage keys or touchpoint keys). `collapse` decides what counts as a loop: `repeats` folds
consecutive repeats (A A B → A B), `revisits` keeps only the first visit of each node
(A B A C → A B C), `none` keeps every event. Paths are cut after `max_length` nodes.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.journey.models import Collapse, PathCount, PathLevel, Paths, SankeyLink, SankeyNode
from services.journey.store.analytics._scope import event_filter, journey_scope, time_range

_NODES = {
    # A touchpoint placed in two stages of the journey appears once per event at the touchpoint level
    # and once per stage at the stage level (ordered by stage position).
    PathLevel.touchpoints: """nodes AS (
    SELECT DISTINCT st.touchpoint_id, t.key AS node, 0 AS rank
    FROM journey_step st JOIN touchpoint t ON t.id = st.touchpoint_id
    WHERE st.journey_id = :j AND st.workspace_id = :w)""",
    PathLevel.stages: """nodes AS (
    SELECT DISTINCT st.touchpoint_id, s.key AS node, s.position AS rank
    FROM journey_step st JOIN stage s ON s.id = st.stage_id
    WHERE st.journey_id = :j AND st.workspace_id = :w)""",
}
_KEEP = {
    Collapse.none: "true",
    Collapse.repeats: "prev_node IS DISTINCT FROM node",
    Collapse.revisits: "visit = 1",
}


def paths_sql(level: PathLevel, collapse: Collapse, filters: str) -> str:
    return f"""
WITH {_NODES[level]},
ev AS (
    SELECT i.customer_id, nodes.node, i.occurred_at, nodes.rank,
           lag(nodes.node) OVER w AS prev_node,
           row_number() OVER (PARTITION BY i.customer_id, nodes.node ORDER BY i.occurred_at, nodes.rank) AS visit
    FROM interaction i JOIN nodes ON nodes.touchpoint_id = i.touchpoint_id
    WHERE true{filters}
    WINDOW w AS (PARTITION BY i.customer_id ORDER BY i.occurred_at, nodes.rank, nodes.node)
),
per_customer AS (
    SELECT customer_id, (array_agg(node ORDER BY occurred_at, rank, node))[1:CAST(:max_length AS int)] AS path
    FROM ev WHERE {_KEEP[collapse]} GROUP BY customer_id
)
SELECT path, count(*) AS n, sum(count(*)) OVER () AS total
FROM per_customer GROUP BY path ORDER BY n DESC, path LIMIT :k
"""


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
) -> Paths:
    await journey_scope(session, workspace_id=workspace_id, journey_id=journey_id)
    since, until = time_range(since, until)
    params: dict[str, Any] = {"w": workspace_id, "j": journey_id, "k": top, "max_length": max_length}
    filters = event_filter("i", since, until, params)
    rows = (await session.execute(sa.text(paths_sql(level, collapse, filters)), params)).all()
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
    )
