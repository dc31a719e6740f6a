"""Trust: positions the database keeps unique, who is running a row, and tags.

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


def downgrade() -> None:
    op.drop_table("tags")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_status")
        batch.drop_index("ix_runs_position")
        batch.create_index("ix_runs_position", ["position"])
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
