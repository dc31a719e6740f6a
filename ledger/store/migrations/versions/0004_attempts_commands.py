"""Attempts and commands: each start of a row's job, and the command a row runs.

A run interrupted, killed or taken over by another process is trained in several
attempts; `duration_s` is their total. A row recorded with `ledger run -- CMD` (or given
a command by `ledger attach`) carries its argv, working folder, git commit and
uncommitted change in `command`. A row imported from W&B or MLflow keeps the tracker's
run id in `tracker_id` (`wandb:ID`, `mlflow:ID`): re-imports merge on it. A row put on the
queue (`ledger queue add`) carries its queue settings in `queue`; `workers` lists the
workers draining it. Added with a plain ALTER TABLE, so the search
triggers of 0003 stay in place on SQLite.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("attempts", sa.JSON))
    op.add_column("runs", sa.Column("command", sa.JSON))
    op.add_column("runs", sa.Column("tracker_id", sa.String(255)))
    op.create_index("ix_runs_tracker_id", "runs", ["tracker_id"], unique=True)
    op.add_column("runs", sa.Column("queue", sa.JSON))
    op.create_table(
        "workers",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("gpu", sa.String(64)),
        sa.Column("data", sa.Text),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
        sa.Column("run_id", sa.Integer),
    )


def downgrade() -> None:
    op.drop_table("workers")
    op.drop_column("runs", "queue")
    op.drop_index("ix_runs_tracker_id", "runs")
    op.drop_column("runs", "tracker_id")
    op.drop_column("runs", "command")  # SQLite 3.35+ drops a plain column in place
    op.drop_column("runs", "attempts")
