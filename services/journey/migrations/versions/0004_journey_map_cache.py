"""journey map cache

Every change that shows in a journey's map bumps `journey.map_version` through the triggers below,
so GET /map can serve a cached document only while it is current. Triggers, not application code,
because the map depends on five tables (journey, persona, stage, journey_step, touchpoint) and a
forgotten bump would serve a stale map. Statement-level triggers with transition tables fire once
per statement, not once per row.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 19:09:17.226962
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# asyncpg runs one statement per execute: the list is applied one by one.
TRIGGERS = [
    """CREATE FUNCTION journey_map_bump_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.map_version := OLD.map_version + 1;
    RETURN NEW;
END $$""",
    """CREATE TRIGGER journey_map_version BEFORE UPDATE ON journey
    FOR EACH ROW EXECUTE FUNCTION journey_map_bump_on_update()""",
    # any UPDATE of a journey row bumps its version (trigger above)
    """CREATE FUNCTION journey_map_touch_by_child() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE journey SET map_version = map_version WHERE id IN (SELECT journey_id FROM changed_new);
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE journey SET map_version = map_version WHERE id IN (SELECT journey_id FROM changed_old);
    END IF;
    RETURN NULL;
END $$""",
    """CREATE FUNCTION journey_map_touch_by_touchpoint() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE journey SET map_version = map_version WHERE id IN (
        SELECT st.journey_id FROM journey_step st WHERE st.touchpoint_id IN (SELECT id FROM changed_new));
    RETURN NULL;
END $$""",
    """CREATE FUNCTION journey_map_touch_by_persona() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE journey SET map_version = map_version WHERE persona_id IN (SELECT id FROM changed_new);
    RETURN NULL;
END $$""",
]

CHILD_TABLES = ("stage", "journey_step")


def upgrade() -> None:
    op.create_table(
        "journey_map_cache",
        sa.Column("journey_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.Integer(), nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["journey_id"], ["journey.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("journey_id"),
    )
    # The documents are large (~1 MB for 2,000 steps) and read whole: storing them uncompressed
    # keeps a rebuild's write cheap (pglz compression of 1 MB costs more than building it).
    op.execute("ALTER TABLE journey_map_cache ALTER COLUMN doc SET STORAGE EXTERNAL")
    op.add_column("journey", sa.Column("map_version", sa.BigInteger(), server_default="0", nullable=False))
    for statement in TRIGGERS:
        op.execute(statement)
    for table in CHILD_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_map_insert AFTER INSERT ON {table} REFERENCING NEW TABLE AS changed_new "
            "FOR EACH STATEMENT EXECUTE FUNCTION journey_map_touch_by_child()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_map_update AFTER UPDATE ON {table} "
            "REFERENCING NEW TABLE AS changed_new OLD TABLE AS changed_old "
            "FOR EACH STATEMENT EXECUTE FUNCTION journey_map_touch_by_child()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_map_delete AFTER DELETE ON {table} REFERENCING OLD TABLE AS changed_old "
            "FOR EACH STATEMENT EXECUTE FUNCTION journey_map_touch_by_child()"
        )
    op.execute(
        "CREATE TRIGGER touchpoint_map_update AFTER UPDATE ON touchpoint REFERENCING NEW TABLE AS changed_new "
        "FOR EACH STATEMENT EXECUTE FUNCTION journey_map_touch_by_touchpoint()"
    )
    op.execute(
        "CREATE TRIGGER persona_map_update AFTER UPDATE ON persona REFERENCING NEW TABLE AS changed_new "
        "FOR EACH STATEMENT EXECUTE FUNCTION journey_map_touch_by_persona()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER persona_map_update ON persona")
    op.execute("DROP TRIGGER touchpoint_map_update ON touchpoint")
    for table in CHILD_TABLES:
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER {table}_map_{event} ON {table}")
    op.execute("DROP TRIGGER journey_map_version ON journey")
    for fn in ("journey_map_bump_on_update", "journey_map_touch_by_child", "journey_map_touch_by_touchpoint",
               "journey_map_touch_by_persona"):
        op.execute(f"DROP FUNCTION {fn}()")
    op.drop_column("journey", "map_version")
    op.drop_table("journey_map_cache")
