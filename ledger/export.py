"""Writing the ledger back out: the Markdown document, or one row per run as CSV/JSON."""

from __future__ import annotations

import json
from typing import Any, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from ledger.markdown import Document as MdDocument
from ledger.markdown import Table, render_document, split_row
from ledger.models import Document, Run
from ledger.records import DEFAULT_HEADERS, link_label_of, row_cells

EXPORT_FORMATS = ("md", "csv", "json")


def export_markdown(session: Session) -> str:
    """The log as a Markdown document: the imported document, with every run as a row.

    Rows whose cells are unchanged since import are written exactly as they were read;
    changed fields and rows added later (reproductions) are rendered in the same style.
    """
    layout = session.scalars(select(Document)).first()
    if layout is None:
        layout = Document(
            before="", after="", headers=list(DEFAULT_HEADERS), aligns=["---"] * len(DEFAULT_HEADERS),
            aligned=True, newline="\n", final_newline=True,
        )
    headers = list(layout.headers)
    runs = list(session.scalars(select(Run).order_by(Run.position, Run.id)))
    label = link_label_of([r.cells for r in runs if r.cells], headers)
    table = Table(headers=headers, aligns=list(layout.aligns), aligned=layout.aligned,
                  header_line=layout.header_line, align_line=layout.align_line)
    for run in runs:
        cells = row_cells(run, headers, link_label=label)
        table.rows.append(cells)
        line = run.row_line if run.row_line is not None and split_row(run.row_line) == cells else None
        table.row_lines.append(line)
    doc = MdDocument(before=layout.before, table=table, after=layout.after,
                     newline=layout.newline, final_newline=layout.final_newline)
    return render_document(doc)


# Columns of the flat export, in order; parsed arguments follow as `args.<key>`.
FLAT_COLUMNS = (
    "name", "date", "model", "kind", "parent", "status", "lb_miou", "val_miou", "lb_val_miou",
    "links", "notes", "arguments", "args_status", "job_hash", "created_at", "updated_at",
)


def flat_records(session: Session) -> list[dict[str, Any]]:
    """One plain dict per run, in ledger order, with parsed arguments as `args.<key>` columns.

    Reads columns, not ORM objects: this is what a 100k-run CSV export spends its time on.
    """
    parent = aliased(Run)
    query = (
        select(
            Run.name, Run.date, Run.model, Run.kind, parent.name, Run.status, Run.lb_miou, Run.val_miou,
            Run.lb_val_miou, Run.links, Run.notes, Run.args_raw, Run.args_status, Run.job_hash,
            Run.created_at, Run.updated_at, Run.args,
        )
        .outerjoin(parent, Run.parent_id == parent.id)
        .order_by(Run.position, Run.id)
    )
    records = []
    for row in session.execute(query):
        record = dict(zip(FLAT_COLUMNS, row[:-1]))
        record["links"] = " ".join(record["links"] or [])
        record["created_at"] = _iso(record["created_at"])
        record["updated_at"] = _iso(record["updated_at"])
        for key, value in (row[-1] or {}).items():
            record[f"args.{key}"] = json.dumps(value) if isinstance(value, (list, dict)) else value
        records.append(record)
    return records


def _iso(value: Any) -> Optional[str]:
    return value.isoformat() if value is not None else None


def export_flat(session: Session, fmt: str) -> str:
    """CSV or JSON text of `flat_records`, through pandas (imported here, never at start-up)."""
    import pandas as pd

    records = flat_records(session)
    arg_columns = sorted({k for r in records for k in r if k.startswith("args.")})
    frame = pd.DataFrame.from_records(records, columns=list(FLAT_COLUMNS) + arg_columns)
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n")
    if fmt == "json":
        return frame.to_json(orient="records", force_ascii=False, indent=2) + "\n"
    raise ValueError(f"unknown format {fmt!r}")
