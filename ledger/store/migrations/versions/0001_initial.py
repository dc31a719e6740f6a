"""The ledger's first schema: runs, metric series, the document layout, imports.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("date", sa.String(32)),
        sa.Column("model", sa.String(255)),
        sa.Column("args_raw", sa.Text),
        sa.Column("args", sa.JSON),
        sa.Column("args_status", sa.String(16), nullable=False),
        sa.Column("args_error", sa.Text),
        sa.Column("links", sa.JSON, nullable=False),
        sa.Column("notes", sa.Text),
        sa.Column("lb_miou", sa.Float),
        sa.Column("val_miou", sa.Float),
        sa.Column("lb_val_miou", sa.Float),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="SET NULL")),
        sa.Column("status", sa.String(16)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.Text),
        sa.Column("source_row", sa.Integer),
        sa.Column("cells", sa.JSON),
        sa.Column("row_line", sa.Text),
    )
    op.create_index("ix_runs_position", "runs", ["position"])
    op.create_index("ix_runs_parent_id", "runs", ["parent_id"])
    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("epoch", sa.Integer),
        sa.Column("value", sa.Float, nullable=False),
        sa.UniqueConstraint("run_id", "name", "step"),
    )
    op.create_index("ix_metrics_run_id", "metrics", ["run_id"])
    op.create_table(
        "documents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source", sa.Text),
        sa.Column("before", sa.Text, nullable=False),
        sa.Column("after", sa.Text, nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("aligns", sa.JSON, nullable=False),
        sa.Column("aligned", sa.Boolean, nullable=False),
        sa.Column("header_line", sa.Text),
        sa.Column("align_line", sa.Text),
        sa.Column("newline", sa.String(2), nullable=False),
        sa.Column("final_newline", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "imports",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("added", sa.Integer, nullable=False),
        sa.Column("changed", sa.Integer, nullable=False),
        sa.Column("unchanged", sa.Integer, nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("imports")
    op.drop_table("documents")
    op.drop_index("ix_metrics_run_id", "metrics")
    op.drop_table("metrics")
    op.drop_index("ix_runs_parent_id", "runs")
    op.drop_index("ix_runs_position", "runs")
    op.drop_table("runs")
