"""Rollup compaction: rows are written to one of a few shards so that concurrent writers of the same
survey × touchpoint × day do not queue on one row lock; once a day is past, its shards are folded into
shard 0, so reads over history touch one row per survey × journey × stage × touchpoint × day."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = structlog.get_logger(__name__)

COMPACT = """
WITH moved AS (
  DELETE FROM response_rollup
  WHERE shard > 0 AND day < (now() AT TIME ZONE 'UTC')::date - 1
  RETURNING *
)
INSERT INTO response_rollup AS r (workspace_id, survey_id, journey_key, stage_key, touchpoint_key, day, shard,
  nps_n, promoters, passives, detractors, csat_n, csat_satisfied, ces_n, ces_sum, ces_sumsq)
SELECT workspace_id, survey_id, journey_key, stage_key, touchpoint_key, day, 0, sum(nps_n), sum(promoters),
  sum(passives), sum(detractors), sum(csat_n), sum(csat_satisfied), sum(ces_n), sum(ces_sum), sum(ces_sumsq)
FROM moved GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
ON CONFLICT (workspace_id, survey_id, journey_key, stage_key, touchpoint_key, day, shard) DO UPDATE SET
  nps_n = r.nps_n + EXCLUDED.nps_n, promoters = r.promoters + EXCLUDED.promoters,
  passives = r.passives + EXCLUDED.passives, detractors = r.detractors + EXCLUDED.detractors,
  csat_n = r.csat_n + EXCLUDED.csat_n, csat_satisfied = r.csat_satisfied + EXCLUDED.csat_satisfied,
  ces_n = r.ces_n + EXCLUDED.ces_n, ces_sum = r.ces_sum + EXCLUDED.ces_sum, ces_sumsq = r.ces_sumsq + EXCLUDED.ces_sumsq
"""


async def compact(engine: AsyncEngine) -> int:
    """Fold the shards of past days into shard 0 (one transaction; concurrent writers wait, lose nothing)."""
    async with engine.begin() as conn:
        result = await conn.execute(text(COMPACT))
    return int(result.rowcount or 0)


class RollupCompactor:
    def __init__(self, engine: AsyncEngine, *, every_seconds: float) -> None:
        self._engine = engine
        self._every = every_seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="rollup-compactor")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await compact(self._engine)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("rollup compaction failed; retrying later")
            await asyncio.sleep(self._every)
