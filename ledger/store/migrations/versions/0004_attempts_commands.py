"""Attempts: each time a row's job was started, by whom, for how long, and how it ended.

A run interrupted, killed or taken over by another process is trained in several
attempts; `duration_s` is their total. Added with a plain ALTER TABLE, so the search
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


def downgrade() -> None:
    op.drop_column("runs", "attempts")  # SQLite 3.35+ drops a plain column in place
