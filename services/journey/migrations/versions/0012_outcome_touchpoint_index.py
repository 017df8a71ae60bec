"""outcome's touchpoint index

Deleting a touchpoint is refused while interactions or outcomes refer to it (neither table has a
foreign key: their per-row triggers would cost the bulk ingest a third). The refusal asks EXISTS;
interactions answer it from ix_interaction_touchpoint_time, outcomes from this index.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 17:00:00
"""

from collections.abc import Sequence

from alembic import op

from services.common.migrations import create_index_concurrently

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_index_concurrently("ix_outcome_touchpoint", "outcome", ["workspace_id", "touchpoint_id"])


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_outcome_touchpoint", table_name="outcome", postgresql_concurrently=True)
