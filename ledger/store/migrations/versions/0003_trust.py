"""Trust: positions the database keeps unique, who is running a row, tags, text search.

A running row records the host and process that train it and a heartbeat the trainer
renews, so that a row whose process is gone can be told from a live one; status is
indexed, as every write command looks for such rows. Positions that
concurrent writers made equal before are renumbered in ledger order first.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = (
    ("host", sa.String(255)),
    ("pid", sa.Integer),
    ("heartbeat_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    conn = op.get_bind()
    ids = [row[0] for row in conn.execute(sa.text("SELECT id FROM runs ORDER BY position, id"))]
    runs = sa.table("runs", sa.column("id", sa.Integer), sa.column("position", sa.Integer))
    for position, run_id in enumerate(ids, start=1):
        conn.execute(runs.update().where(runs.c.id == run_id).values(position=position))
    with op.batch_alter_table("runs") as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_))
        batch.drop_index("ix_runs_position")
        batch.create_index("ix_runs_position", ["position"], unique=True)
        batch.create_index("ix_runs_status", ["status"])
    op.create_table(
        "tags",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.UniqueConstraint("run_id", "tag"),
    )
    op.create_index("ix_tags_run_id", "tags", ["run_id"])
    op.create_index("ix_tags_tag", "tags", ["tag"])
    _create_search_index(conn)


# `ledger list --search`: on SQLite, an FTS5 index of names, notes and raw arguments with
# the trigram tokenizer (case-insensitive substrings, as ILIKE finds on PostgreSQL), kept
# by triggers. A later migration that rebuilds the runs table (batch mode) must create
# the triggers again.
SEARCH_SQL = (
    "CREATE VIRTUAL TABLE runs_search USING fts5(name, notes, args_raw, content='runs', content_rowid='id',"
    " tokenize='trigram')",
    "CREATE TRIGGER runs_search_insert AFTER INSERT ON runs BEGIN"
    " INSERT INTO runs_search(rowid, name, notes, args_raw) VALUES (new.id, new.name, new.notes, new.args_raw); END",
    "CREATE TRIGGER runs_search_delete AFTER DELETE ON runs BEGIN"
    " INSERT INTO runs_search(runs_search, rowid, name, notes, args_raw)"
    " VALUES ('delete', old.id, old.name, old.notes, old.args_raw); END",
    "CREATE TRIGGER runs_search_update AFTER UPDATE OF name, notes, args_raw ON runs BEGIN"
    " INSERT INTO runs_search(runs_search, rowid, name, notes, args_raw)"
    " VALUES ('delete', old.id, old.name, old.notes, old.args_raw);"
    " INSERT INTO runs_search(rowid, name, notes, args_raw) VALUES (new.id, new.name, new.notes, new.args_raw); END",
    "INSERT INTO runs_search(runs_search) VALUES ('rebuild')",
)


def _create_search_index(conn) -> None:
    if conn.dialect.name != "sqlite":
        return
    try:
        conn.exec_driver_sql(SEARCH_SQL[0])
    except sa.exc.OperationalError:  # an SQLite without FTS5 or its trigram tokenizer: search uses LIKE
        return
    for statement in SEARCH_SQL[1:]:
        conn.exec_driver_sql(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS runs_search_{trigger}")
        op.execute("DROP TABLE IF EXISTS runs_search")
    op.drop_table("tags")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_status")
        batch.drop_index("ix_runs_position")
        batch.create_index("ix_runs_position", ["position"])
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
