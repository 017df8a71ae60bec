"""case's customer index

GET /v1/cases?customer= lists the cases of some customers' responses (the gateway's customer 360
reads them in one call instead of one per response). A case keeps its response's
`customer_external_id`, so this index answers it without a join; `id` last keeps one customer's
cases in page order and puts the cursor's `id >` in the index condition.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 09:37:05
"""

from collections.abc import Sequence

from alembic import op

from services.common.migrations import create_index_concurrently

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_index_concurrently("ix_case_customer", "follow_up_case", ["workspace_id", "customer_external_id", "id"])


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_case_customer", table_name="follow_up_case", postgresql_concurrently=True)
