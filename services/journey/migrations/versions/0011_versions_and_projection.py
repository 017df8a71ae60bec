"""aggregate versions; the funnel/paths rollup becomes a projection built from events; no map cache

- `version` on persona, touchpoint, journey and customer: 1 when created, + 1 with every change;
  events carry it. A journey's stages and steps bump the journey's.
- The journey map is built per request by its one statement (a GET never writes): the cache table,
  `journey.map_version` and the triggers that bumped it (0004) go.
- `journey_rollup` records what the journey-analytics consumer built `customer_journey` with (the
  structure's signature and stages), whether a rebuild is due (`stale_since`) and the journey
  version it holds. Rows built by the old rollup while current are kept and answer until the
  background rebuild (every journey is due one: the signature they were built with is unknown);
  the others are deleted. The projections lose their foreign keys to `journey`: a deleted
  journey's rows go when the consumer applies its event, not in the request.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 15:00:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VERSIONED = ("persona", "touchpoint", "journey", "customer")
_STAGES = (
    "(SELECT jsonb_agg(jsonb_build_object('id', s.id, 'key', s.key, 'name', s.name, 'position', s.position) "
    "ORDER BY s.position) FROM stage s WHERE s.journey_id = j.id)"
)


def _map_cache_revision() -> ModuleType:
    """Revision 0004, whose upgrade creates what this one drops (the downgrade puts it back)."""
    path = Path(__file__).with_name("0004_journey_map_cache.py")
    spec = importlib.util.spec_from_file_location("journey_0004_journey_map_cache", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    for table in VERSIONED:
        op.add_column(table, sa.Column("version", sa.BigInteger(), server_default="1", nullable=False))

    op.add_column("journey_rollup", sa.Column("signature", sa.String(), nullable=True))
    op.add_column("journey_rollup", sa.Column("stages", postgresql.JSONB(), nullable=True))
    op.add_column("journey_rollup", sa.Column("stale_since", sa.DateTime(timezone=True), nullable=True))
    op.alter_column("journey_rollup", "built_at", nullable=True, server_default=None)
    # Current under the old rule (built for the journey's map_version): kept, labelled with the
    # stages as they are, due a rebuild. Anything else is rebuilt from nothing.
    op.execute(
        "DELETE FROM customer_journey cj WHERE NOT EXISTS (SELECT 1 FROM journey_rollup r JOIN journey j "
        "ON j.id = r.journey_id WHERE r.journey_id = cj.journey_id AND r.version = j.map_version)"
    )
    op.execute(
        f"UPDATE journey_rollup r SET signature = CASE WHEN r.version = j.map_version THEN '' END, "
        f"stages = CASE WHEN r.version = j.map_version THEN {_STAGES} END, version = 0, stale_since = now() "
        "FROM journey j WHERE j.id = r.journey_id"
    )
    op.execute(
        "INSERT INTO journey_rollup (journey_id, workspace_id, version, stale_since) "
        "SELECT id, workspace_id, 0, now() FROM journey ON CONFLICT (journey_id) DO NOTHING"
    )
    op.drop_constraint("fk_customer_journey_journey", "customer_journey", type_="foreignkey")
    op.drop_constraint("journey_rollup_journey_id_fkey", "journey_rollup", type_="foreignkey")
    op.drop_constraint("uq_journey_id_workspace", "journey", type_="unique")
    op.create_index(
        "ix_journey_rollup_stale",
        "journey_rollup",
        ["stale_since"],
        unique=False,
        postgresql_where=sa.text("stale_since IS NOT NULL"),
    )

    op.execute("DROP TRIGGER persona_map_update ON persona")
    op.execute("DROP TRIGGER touchpoint_map_update ON touchpoint")
    for table in ("stage", "journey_step"):
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER {table}_map_{event} ON {table}")
    op.execute("DROP TRIGGER journey_map_version ON journey")
    for function in ("bump_on_update", "touch_by_child", "touch_by_touchpoint", "touch_by_persona"):
        op.execute(f"DROP FUNCTION journey_map_{function}()")
    op.drop_column("journey", "map_version")
    op.drop_table("journey_map_cache")


def downgrade() -> None:
    _map_cache_revision().upgrade()  # the cache table, map_version (0 everywhere) and the triggers

    op.drop_index("ix_journey_rollup_stale", table_name="journey_rollup")
    op.execute("DELETE FROM customer_journey cj WHERE NOT EXISTS (SELECT 1 FROM journey j WHERE j.id = cj.journey_id)")
    op.execute("DELETE FROM journey_rollup r WHERE NOT EXISTS (SELECT 1 FROM journey j WHERE j.id = r.journey_id)")
    # The old rule rebuilds on the next read whatever is not built for the current map_version.
    op.execute("UPDATE journey_rollup SET version = -1, built_at = coalesce(built_at, now())")
    op.alter_column("journey_rollup", "built_at", nullable=False, server_default=sa.text("now()"))
    for column in ("stale_since", "stages", "signature"):
        op.drop_column("journey_rollup", column)
    op.create_unique_constraint("uq_journey_id_workspace", "journey", ["id", "workspace_id"])
    op.create_foreign_key(
        "journey_rollup_journey_id_fkey", "journey_rollup", "journey", ["journey_id"], ["id"], ondelete="CASCADE"
    )
    op.create_foreign_key(
        "fk_customer_journey_journey",
        "customer_journey",
        "journey",
        ["journey_id", "workspace_id"],
        ["id", "workspace_id"],
        ondelete="CASCADE",
    )
    for table in VERSIONED:
        op.drop_column(table, "version")
