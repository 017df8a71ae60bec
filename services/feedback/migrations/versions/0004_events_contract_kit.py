"""events contract (kit tables): outbox rows count failed publishes and are parked in dead_letter,
dead letters name their workspace, consumers record how far they applied (projection_state), and
the inbox can be purged by age

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 14:00:00
"""

from collections.abc import Sequence

from services.common.migrations import downgrade_events_contract, upgrade_events_contract

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    upgrade_events_contract()


def downgrade() -> None:
    downgrade_events_contract()
