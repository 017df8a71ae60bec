"""derived data as projections of events; a version on every mutable aggregate

The rollups lose their shards: one consumer applies them, so no writers queue on a row lock. Their
rows are emptied rather than folded: the new durable consumer of the projections starts at the
beginning of the stream, which keeps every event (STREAM_MAX_AGE_DAYS = 0), and rebuilds them from
the `feedback.response.submitted` events; rows kept here would be counted twice. Surveys get a
`revision` (their `version` is the questionnaire version responses reference); cases, loop rules,
webhook subscriptions, workspace settings and opt-outs a `version`. An opt-out that is withdrawn
keeps its row (`withdrawn_at`), so its version goes on increasing.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEYS = ["workspace_id", "survey_id", "journey_key", "stage_key", "touchpoint_key"]
_ROLLUPS = [("response_rollup", "day"), ("response_rollup_month", "month")]
# table -> its aggregate version column
_VERSIONS = [
    ("survey", "revision"),
    ("follow_up_case", "version"),
    ("loop_rule", "version"),
    ("webhook_subscription", "version"),
    ("workspace_setting", "version"),
    ("opt_out", "version"),
]


def upgrade() -> None:
    for table, period in _ROLLUPS:
        op.execute(f"DELETE FROM {table}")
        op.drop_constraint(f"{table}_pkey", table, type_="primary")
        op.drop_column(table, "shard")
        op.create_primary_key(f"{table}_pkey", table, [*_KEYS, period])
    for table, column in _VERSIONS:
        op.add_column(table, sa.Column(column, sa.BigInteger(), server_default="1", nullable=False))
    op.add_column("opt_out", sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM opt_out WHERE withdrawn_at IS NOT NULL")
    op.drop_column("opt_out", "withdrawn_at")
    for table, column in reversed(_VERSIONS):
        op.drop_column(table, column)
    for table, period in _ROLLUPS:
        op.drop_constraint(f"{table}_pkey", table, type_="primary")
        op.add_column(table, sa.Column("shard", sa.SmallInteger(), server_default="0", nullable=False))
        op.alter_column(table, "shard", server_default=None)
        op.create_primary_key(f"{table}_pkey", table, [*_KEYS, period, "shard"])
