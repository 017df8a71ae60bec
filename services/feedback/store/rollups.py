"""The rollup projection: NPS/CSAT/CES counts per survey × journey × stage × touchpoint × UTC day and
month ('' = no key), added up from `feedback.response.submitted` events. Counts and sums only, so
the order in which events arrive does not matter; the inbox makes each event count once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

_KEYS = "workspace_id, survey_id, journey_key, stage_key, touchpoint_key"
_COUNTS = "nps_n, promoters, passives, detractors, csat_n, csat_satisfied, ces_n, ces_sum, ces_sumsq"


def _add(table: str, period: str, expr: str) -> str:
    """Upsert the batch's counts into one level; rows are locked in key order, so two batches
    applied at once (two replicas) wait for each other instead of deadlocking."""
    return f"""
INSERT INTO {table} AS r ({_KEYS}, {period}, {_COUNTS})
SELECT workspace_id, survey_id, coalesce(journey_key, ''), coalesce(stage_key, ''), coalesce(touchpoint_key, ''),
  {expr}, count(nps), count(*) FILTER (WHERE nps >= 9), count(*) FILTER (WHERE nps BETWEEN 7 AND 8),
  count(*) FILTER (WHERE nps <= 6), count(csat), count(*) FILTER (WHERE csat >= 4),
  count(ces), coalesce(sum(ces), 0), coalesce(sum(ces * ces), 0)
FROM submitted GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
ON CONFLICT ({_KEYS}, {period}) DO UPDATE SET
  nps_n = r.nps_n + EXCLUDED.nps_n, promoters = r.promoters + EXCLUDED.promoters,
  passives = r.passives + EXCLUDED.passives, detractors = r.detractors + EXCLUDED.detractors,
  csat_n = r.csat_n + EXCLUDED.csat_n, csat_satisfied = r.csat_satisfied + EXCLUDED.csat_satisfied,
  ces_n = r.ces_n + EXCLUDED.ces_n, ces_sum = r.ces_sum + EXCLUDED.ces_sum,
  ces_sumsq = r.ces_sumsq + EXCLUDED.ces_sumsq"""


# submitted_at travels as text: it is the event's JSON string, which PostgreSQL parses.
ADD = sa.text(
    f"""
WITH submitted AS (
  SELECT workspace_id, survey_id, journey_key, stage_key, touchpoint_key,
    CAST(submitted AS timestamptz) AS submitted_at, nps, csat, ces
  FROM unnest(CAST(:workspaces AS text[]), CAST(:surveys AS uuid[]), CAST(:journeys AS text[]),
    CAST(:stages AS text[]), CAST(:touchpoints AS text[]), CAST(:submitted AS text[]), CAST(:nps AS int[]),
    CAST(:csat AS int[]), CAST(:ces AS int[]))
    AS t(workspace_id, survey_id, journey_key, stage_key, touchpoint_key, submitted, nps, csat, ces)
), day AS ({_add("response_rollup", "day", "(submitted_at AT TIME ZONE 'UTC')::date")}
)
{_add("response_rollup_month", "month", "date_trunc('month', submitted_at AT TIME ZONE 'UTC')::date")}
"""
)
RESET = ("DELETE FROM response_rollup", "DELETE FROM response_rollup_month")

# parameter of ADD -> field of a response (`ResponsePublic`)
_FIELDS = {
    "surveys": "survey_id",
    "journeys": "journey_key",
    "stages": "stage_key",
    "touchpoints": "touchpoint_key",
    "submitted": "submitted_at",
    "nps": "nps",
    "csat": "csat",
    "ces": "ces",
}


async def add_responses(session: AsyncSession, *, responses: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Count these (workspace id, public response) pairs in both levels."""
    if not responses:
        return
    params: dict[str, list[Any]] = {"workspaces": [w for w, _ in responses]}
    for param, field in _FIELDS.items():
        params[param] = [r[field] for _, r in responses]
    await session.execute(ADD, params)
