"""Theme and sentiment summaries of comments per touchpoint, stage or journey."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import sqlalchemy as sa
from fastapi import Query
from pydantic import Field

from services.common.db import SessionDep
from services.common.timestamps import TimeQuery
from services.feedback.api._deps import Reader, make_router
from services.feedback.models._base import Shape

router = make_router()


class ThemeCount(Shape):
    theme: str
    n: int
    mean_sentiment: float


class CommentSummary(Shape):
    group: str | None = Field(description="The touchpoint, stage or journey key (null: none set).")
    comments: int
    mean_sentiment: float | None
    positive: int = Field(description="Sentiment ≥ 0.05 (VADER's convention).")
    neutral: int
    negative: int = Field(description="Sentiment ≤ −0.05.")
    themes: list[ThemeCount]


class CommentSummaries(Shape):
    group_by: str
    pending: int = Field(description="Comments in the filter not analysed yet (analysis runs shortly after writes).")
    groups: list[CommentSummary]
    as_of: datetime = Field(
        description="Read from the responses at this time: the groups hold every comment analysed by then."
    )


_SUMMARY = """
WITH c AS (
  SELECT {col} AS grp, sentiment, themes FROM response
  WHERE workspace_id = :w AND sentiment IS NOT NULL {where}
), totals AS (
  SELECT grp, count(*) AS comments, avg(sentiment) AS mean_sentiment,
    count(*) FILTER (WHERE sentiment >= 0.05) AS positive,
    count(*) FILTER (WHERE sentiment > -0.05 AND sentiment < 0.05) AS neutral,
    count(*) FILTER (WHERE sentiment <= -0.05) AS negative
  FROM c GROUP BY grp
), th AS (
  SELECT grp, t.theme, count(*) AS n, avg(sentiment) AS mean_sentiment
  FROM c CROSS JOIN LATERAL jsonb_array_elements_text(c.themes) AS t(theme) GROUP BY grp, t.theme
)
SELECT totals.*, coalesce((SELECT jsonb_agg(jsonb_build_object('theme', theme, 'n', n,
  'mean_sentiment', mean_sentiment) ORDER BY n DESC, theme) FROM th WHERE th.grp IS NOT DISTINCT FROM totals.grp),
  '[]'::jsonb) AS themes
FROM totals ORDER BY comments DESC, grp
"""


@router.get("/comments/summary", tags=["comments"])
async def summarise_comments(
    caller: Reader,
    session: SessionDep,
    group_by: Annotated[Literal["touchpoint", "stage", "journey"], Query()] = "touchpoint",
    survey: Annotated[list[UUID] | None, Query(max_length=100)] = None,
    touchpoint: Annotated[list[str] | None, Query(max_length=500)] = None,
    since: Annotated[TimeQuery | None, Query(description="submitted_at ≥ this (UTC if no zone).")] = None,
    until: Annotated[TimeQuery | None, Query(description="submitted_at < this (UTC if no zone).")] = None,
) -> CommentSummaries:
    """Sentiment and themes of analysed comments, per touchpoint, stage or journey."""
    params: dict[str, Any] = {"w": caller.workspace_id}
    where = []
    if survey:
        params["surveys"] = survey
        where.append("survey_id = ANY(:surveys)")
    if touchpoint:
        params["touchpoints"] = touchpoint
        where.append("touchpoint_key = ANY(:touchpoints)")
    if since:
        params["since"] = since
        where.append("submitted_at >= :since")
    if until:
        params["until"] = until
        where.append("submitted_at < :until")
    clause = "".join(f" AND {w}" for w in where)
    read_at = datetime.now(UTC)
    # Pending first: analysis only ever completes, so the groups read after it hold every comment
    # that was not pending then ("pending 0" is true of the groups returned). Read the other way
    # round, a comment analysed between the two reads was in neither.
    pending = (
        await session.execute(
            sa.text(
                "SELECT count(*) FROM response WHERE workspace_id = :w AND analysed_at IS NULL "
                f"AND comment IS NOT NULL{clause}"
            ),
            params,
        )
    ).scalar_one()
    rows = (await session.execute(sa.text(_SUMMARY.format(col=f"{group_by}_key", where=clause)), params)).all()
    return CommentSummaries(
        group_by=group_by,
        pending=pending,
        as_of=read_at,
        groups=[
            CommentSummary(
                group=r.grp,
                comments=r.comments,
                mean_sentiment=r.mean_sentiment,
                positive=r.positive,
                neutral=r.neutral,
                negative=r.negative,
                themes=[ThemeCount.model_validate(t) for t in r.themes],
            )
            for r in rows
        ],
    )
