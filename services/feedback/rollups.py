"""Rollup compaction: rows are written to one of a few shards so that concurrent writers of the same
survey × touchpoint × day do not queue on one row lock; once a day is past, its shards are folded into
shard 0, so reads over history touch one row per survey × journey × stage × touchpoint × day."""

from __future__ import annotations

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.worker import LoopWorker

log = structlog.get_logger(__name__)


def _compact(table: str, period: str, past: str) -> str:
    return f"""
WITH moved AS (
  DELETE FROM {table} WHERE shard > 0 AND {period} < {past} RETURNING *
)
INSERT INTO {table} AS r (workspace_id, survey_id, journey_key, stage_key, touchpoint_key, {period}, shard,
  nps_n, promoters, passives, detractors, csat_n, csat_satisfied, ces_n, ces_sum, ces_sumsq)
SELECT workspace_id, survey_id, journey_key, stage_key, touchpoint_key, {period}, 0, sum(nps_n), sum(promoters),
  sum(passives), sum(detractors), sum(csat_n), sum(csat_satisfied), sum(ces_n), sum(ces_sum), sum(ces_sumsq)
FROM moved GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
ON CONFLICT (workspace_id, survey_id, journey_key, stage_key, touchpoint_key, {period}, shard) DO UPDATE SET
  nps_n = r.nps_n + EXCLUDED.nps_n, promoters = r.promoters + EXCLUDED.promoters,
  passives = r.passives + EXCLUDED.passives, detractors = r.detractors + EXCLUDED.detractors,
  csat_n = r.csat_n + EXCLUDED.csat_n, csat_satisfied = r.csat_satisfied + EXCLUDED.csat_satisfied,
  ces_n = r.ces_n + EXCLUDED.ces_n, ces_sum = r.ces_sum + EXCLUDED.ces_sum, ces_sumsq = r.ces_sumsq + EXCLUDED.ces_sumsq
"""


# Days before yesterday and months before last month: no ordinary write touches them any more
# (imports of history still may, and simply wait for the fold's row locks).
COMPACT_DAYS = _compact("response_rollup", "day", "(now() AT TIME ZONE 'UTC')::date - 1")
COMPACT_MONTHS = _compact(
    "response_rollup_month", "month", "(date_trunc('month', now() AT TIME ZONE 'UTC') - interval '1 month')::date"
)
COMPACT = COMPACT_DAYS + ";" + COMPACT_MONTHS


async def compact(engine: AsyncEngine) -> int:
    """Fold the shards of past days into shard 0 (one transaction; concurrent writers wait, lose nothing)."""
    total = 0
    for statement in (COMPACT_DAYS, COMPACT_MONTHS):
        async with engine.begin() as conn:
            result = await conn.execute(text(statement))
        total += int(result.rowcount or 0)
    return total


class RollupCompactor(LoopWorker):
    name = "rollup-compactor"

    def __init__(self, engine: AsyncEngine, *, every_seconds: float) -> None:
        super().__init__(idle_seconds=every_seconds)
        self._engine = engine

    async def run_once(self) -> bool:
        await compact(self._engine)
        return False
