"""customer_touchpoint keeps only that a customer met a touchpoint

Reach reads no more than the key (which customers met which touchpoint, per journey tag); the
first and last contact and the count were maintained on every ingest and read by nothing (the
customer DNA takes them from the interactions). Without them the ingest inserts the new pairs
and skips known ones instead of updating a row per pair: ~50 ms less per 10,000 interactions.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 15:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for column in ("first_at", "last_at", "interactions"):
        op.drop_column("customer_touchpoint", column)


def downgrade() -> None:
    op.add_column("customer_touchpoint", sa.Column("first_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("customer_touchpoint", sa.Column("last_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("customer_touchpoint", sa.Column("interactions", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE customer_touchpoint ct SET first_at = a.first_at, last_at = a.last_at, interactions = a.n "
        "FROM (SELECT workspace_id, touchpoint_id, customer_id, "
        "COALESCE(journey_id, '00000000-0000-0000-0000-000000000000'::uuid) AS tag, "
        "min(occurred_at) AS first_at, max(occurred_at) AS last_at, count(*) AS n "
        "FROM interaction GROUP BY 1, 2, 3, 4) a "
        "WHERE (ct.workspace_id, ct.touchpoint_id, ct.customer_id, ct.journey_tag) = "
        "(a.workspace_id, a.touchpoint_id, a.customer_id, a.tag)"
    )
    for column in ("first_at", "last_at", "interactions"):
        op.alter_column("customer_touchpoint", column, nullable=False)
