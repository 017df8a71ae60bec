"""customer journey rollup keeps each customer's stage events and path times, so funnels over any
time range and conversion window, and paths over any time range, read the rollup instead of every
interaction

`stage_times`: the times of the customer's events at each stage, sorted within the stage, stages
one after the other; `stage_bounds`: where each stage's times start (n_stages + 1 offsets);
`<level>_times`: the time of each node of the uncollapsed path `<level>_none`, now kept uncut. The
rows are rebuilt (not folded in here: the statement that builds them is generated per journey by
store/analytics/rollup.py): every journey's rollup is marked stale and its rows deleted, so the
next funnel or paths read rebuilds it, and reads answer from the interactions until then.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 17:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("UPDATE journey_rollup SET version = -1")
    op.execute("DELETE FROM customer_journey")
    op.add_column(
        "customer_journey", sa.Column("stage_times", sa.ARRAY(sa.DateTime(timezone=True)), nullable=False)
    )
    op.add_column("customer_journey", sa.Column("stage_bounds", sa.ARRAY(sa.Integer()), nullable=False))
    for level in ("stages", "touchpoints"):
        op.add_column(
            "customer_journey", sa.Column(f"{level}_times", sa.ARRAY(sa.DateTime(timezone=True)), nullable=False)
        )


def downgrade() -> None:
    for level in ("stages", "touchpoints"):
        op.drop_column("customer_journey", f"{level}_times")
    op.drop_column("customer_journey", "stage_bounds")
    op.drop_column("customer_journey", "stage_times")
