"""customer's persona index on persona_id alone

With `workspace_id` first, the index also served workspace-only conditions, and for a workspace
the statistics did not know yet (a new tenant, before autovacuum's next ANALYZE: estimated at one
customer) the planner picked it for the ingest's customer lookup, scanning every customer of the
workspace once per staged interaction: 4-11 s per 10,000 interactions at 20,000 customers. Persona
ids are unique across workspaces, so `persona_id` alone serves the persona member queries, and the
ON DELETE SET NULL of a deleted persona now finds its customers by index.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 17:55:00
"""

from collections.abc import Sequence

from services.common.migrations import replace_index_concurrently

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    replace_index_concurrently("ix_customer_persona", "customer", ["persona_id"])  # without blocking writes


def downgrade() -> None:
    replace_index_concurrently("ix_customer_persona", "customer", ["workspace_id", "persona_id"])
