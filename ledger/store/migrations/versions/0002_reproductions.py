"""Reproductions: the resolved job, its hash, the environment and data they ran on.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = (
    ("job", sa.JSON),
    ("job_hash", sa.String(64)),
    ("environment", sa.JSON),
    ("data_fingerprint", sa.JSON),
    ("duration_s", sa.Float),
    ("checkpoint_path", sa.Text),
    ("error", sa.Text),
)


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_))
        batch.create_index("ix_runs_job_hash", ["job_hash"])


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_job_hash")
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
