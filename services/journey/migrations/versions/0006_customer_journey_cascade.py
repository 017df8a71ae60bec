"""customer_journey rows go with their journey

Rows of journeys deleted before this revision are removed; from now on the foreign key deletes
them with the journey. Its key (journey_id, workspace_id) targets a new unique key of journey, and
is the rollup's primary-key prefix, so the cascade reads an index, not the table.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 14:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_unique_constraint("uq_journey_id_workspace", "journey", ["id", "workspace_id"])
    op.execute(
        "DELETE FROM customer_journey cj WHERE NOT EXISTS "
        "(SELECT 1 FROM journey j WHERE j.id = cj.journey_id AND j.workspace_id = cj.workspace_id)"
    )
    op.create_foreign_key(
        "fk_customer_journey_journey",
        "customer_journey",
        "journey",
        ["journey_id", "workspace_id"],
        ["id", "workspace_id"],
        ondelete="CASCADE",
    )


def downgrade() -> None:
    op.drop_constraint("fk_customer_journey_journey", "customer_journey", type_="foreignkey")
    op.drop_constraint("uq_journey_id_workspace", "journey", type_="unique")
