"""Trust: positions the database keeps unique, and who is running a row.

A running row records the host and process that train it and a heartbeat the trainer
renews, so that a row whose process is gone can be told from a live one. Positions that
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


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_position")
        batch.create_index("ix_runs_position", ["position"])
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
