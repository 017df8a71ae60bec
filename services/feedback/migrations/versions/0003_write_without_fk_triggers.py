"""responses, cases and case history without foreign-key triggers

A foreign key checks every inserted row with a trigger: 85 ms of a 450 ms statement writing
10,000 responses with 6,364 cases (EXPLAIN ANALYZE). The three dropped here check nothing the
write does not already ensure: a response's survey was read in the same transaction and surveys
are never deleted (there is no endpoint for it; a survey is closed instead); a case is inserted
by the statement that inserted its response, or for a response read before (by hand); a history
entry is written with its case or for a case locked by the change. Nothing deletes responses or
cases, so the cascades never ran. A case's rule keeps its key: deleting a rule sets it to NULL.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 16:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, constraint, column, referred table, on delete)
_KEYS = [
    ("response", "response_survey_id_fkey", "survey_id", "survey", "RESTRICT"),
    ("follow_up_case", "follow_up_case_response_id_fkey", "response_id", "response", "CASCADE"),
    ("case_history", "case_history_case_id_fkey", "case_id", "follow_up_case", "CASCADE"),
]


def upgrade() -> None:
    for table, name, _, _, _ in _KEYS:
        op.drop_constraint(name, table, type_="foreignkey")


def downgrade() -> None:
    for table, name, column, referred, ondelete in _KEYS:
        op.create_foreign_key(name, table, referred, [column], ["id"], ondelete=ondelete)
