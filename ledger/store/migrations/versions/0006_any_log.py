"""Any team's log: every table of a document, score columns as metrics, derived names, dates.

A document may hold several experiment tables; `documents.tables` keeps each one's layout
and the text after it, and each run records the table it came from (`table_index`) and
the heading above that table (`section`). Score columns (`mIoU(latest)`, `Dice`) become
`scores`, a run's metric values by name. A row of a table with no run-name column gets a
name derived from its cells (`name_derived`). `date_iso` is the date cell read as an ISO
date, so that filters compare dates, not text.

Existing ledgers are filled in from what they hold: the one document becomes its one
table, runs imported from it get its section, their score cells are read, their dates
parsed, and Arguments cells the older parser left unparsed are read again (free-form
cells now give their keys with status "loose"). Columns are added with a plain ALTER
TABLE, so the search triggers of 0003 stay in place on SQLite.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("table_index", sa.Integer))
    op.add_column("runs", sa.Column("section", sa.String(255)))
    op.add_column("runs", sa.Column("scores", sa.JSON))
    op.add_column("runs", sa.Column("name_derived", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("runs", sa.Column("date_iso", sa.String(10)))
    op.create_index("ix_runs_section", "runs", ["section"])
    op.create_index("ix_runs_date_iso", "runs", ["date_iso"])
    op.add_column("documents", sa.Column("tables", sa.JSON))
    _fill(op.get_bind())


def _fill(conn) -> None:
    from ledger.core.args import parse_arguments
    from ledger.core.cells import parse_date, parse_score, roles_for, score_columns
    from ledger.core.markdown import last_heading

    document = conn.execute(sa.text(
        "SELECT id, before, after, headers, aligns, aligned, header_line, align_line, newline, final_newline"
        " FROM documents ORDER BY id LIMIT 1")).first()
    section, columns = None, []
    if document is not None:
        headers = _json(document.headers)
        section = last_heading(document.before)
        columns = score_columns(headers, roles_for(headers))
        layout = {
            "headers": headers, "aligns": _json(document.aligns), "aligned": bool(document.aligned),
            "header_line": document.header_line, "align_line": document.align_line, "after": document.after,
            "section": section, "newline": document.newline, "final_newline": bool(document.final_newline),
            "name_column": None, "blanks": [],
        }
        conn.execute(sa.text("UPDATE documents SET tables = :tables WHERE id = :id"),
                     {"tables": json.dumps([layout]), "id": document.id})
    for row in _runs(conn):
        values: dict = {"id": row.id, "date_iso": parse_date(row.date)}
        sets = ["date_iso = :date_iso"]
        cells = _json(row.cells)
        if cells is not None:
            values.update(table_index=0, section=section)
            sets += ["table_index = :table_index", "section = :section"]
            if columns:
                values["scores"] = json.dumps({metric: parse_score(cells.get(h, "")) for h, metric in columns})
                sets.append("scores = :scores")
        if row.args_status == "unparsed":
            parsed = parse_arguments(row.args_raw)
            if parsed.status != "unparsed":
                values.update(args=json.dumps(parsed.values), args_status=parsed.status, args_error=parsed.error)
                sets += ["args = :args", "args_status = :args_status", "args_error = :args_error"]
        conn.execute(sa.text(f"UPDATE runs SET {', '.join(sets)} WHERE id = :id"), values)


def _runs(conn, batch: int = 1000):
    """The runs a batch at a time, by id: a million-run ledger is not read into memory at once."""
    query = sa.text("SELECT id, date, cells, args_raw, args_status FROM runs WHERE id > :last ORDER BY id LIMIT :n")
    last = 0
    while True:
        rows = conn.execute(query, {"last": last, "n": batch}).all()
        yield from rows
        if len(rows) < batch:
            return
        last = rows[-1].id


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def downgrade() -> None:
    op.drop_column("documents", "tables")
    op.drop_index("ix_runs_date_iso", "runs")
    op.drop_index("ix_runs_section", "runs")
    for column in ("date_iso", "name_derived", "scores", "section", "table_index"):
        op.drop_column("runs", column)  # SQLite 3.35+ drops a plain column in place
