"""score tallies kept by the consumers; refresh and fit lanes of dirty journeys; facts indexed by customer

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 06:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "score_tally",
        sa.Column("scope_id", sa.UUID(), nullable=False),
        sa.Column("workspace_id", sa.Text(), nullable=False),
        sa.Column("journey_id", sa.UUID(), nullable=False),
        sa.Column("touchpoints", sa.ARRAY(sa.UUID()), nullable=False),
        sa.Column("counts", sa.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("scope_id"),
    )
    op.create_index("ix_score_tally_journey", "score_tally", ["workspace_id", "journey_id"], unique=False)
    op.add_column("dirty_journey", sa.Column("fit_due_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("dirty_journey", sa.Column("fit_leased_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("dirty_journey", sa.Column("fit_lease", sa.UUID(), nullable=True))
    op.alter_column("dirty_journey", "due_at", existing_type=sa.DateTime(timezone=True), nullable=True)
    op.drop_column("dirty_journey", "marks")
    op.create_index("ix_interaction_customer", "interaction", ["workspace_id", "customer_n"], unique=False)
    op.create_index("ix_outcome_customer", "outcome", ["workspace_id", "customer_n"], unique=False)
    op.create_index("ix_response_customer", "response", ["workspace_id", "customer_n"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_response_customer", table_name="response")
    op.drop_index("ix_outcome_customer", table_name="outcome")
    op.drop_index("ix_interaction_customer", table_name="interaction")
    op.add_column("dirty_journey", sa.Column("marks", sa.BigInteger(), server_default="1", nullable=False))
    op.alter_column("dirty_journey", "marks", server_default=None)
    op.execute("UPDATE dirty_journey SET due_at = coalesce(due_at, fit_due_at, now())")
    op.alter_column("dirty_journey", "due_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    op.drop_column("dirty_journey", "fit_lease")
    op.drop_column("dirty_journey", "fit_leased_until")
    op.drop_column("dirty_journey", "fit_due_at")
    op.drop_index("ix_score_tally_journey", table_name="score_tally")
    op.drop_table("score_tally")
