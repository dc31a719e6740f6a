"""Importing a log into the ledger: Markdown tables, and the CSV/JSON that export writes.

An import is a merge keyed by run name: rows the ledger lacks are added, rows whose
cells changed are updated in place (keeping their id, so reproductions stay linked), the
rest are left alone. Nothing is written until the whole file has been read and checked.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger.core.args import parse_arguments
from ledger.core.errors import LedgerError
from ledger.core.markdown import MarkdownError, parse_document
from ledger.store.models import Document, Import, Run
from ledger.core.cells import check_name, fields_from_cells, is_experiment_table, parse_lb, parse_links

FORMATS = ("md", "csv", "json")


@dataclass
class ImportReport:
    source: str
    format: str
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    layout: str = "kept"  # created | replaced | kept: what happened to the exported document
    new_columns: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def detect_format(path: Path, fmt: Optional[str]) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise LedgerError(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}")
        return fmt
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("md", "markdown", "txt"):
        return "md"
    if suffix in ("csv", "json"):
        return suffix
    raise LedgerError(f"cannot tell the format of {path.name}; pass --format md|csv|json")


def read_text(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            return fh.read()
    except FileNotFoundError:
        raise LedgerError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise LedgerError(f"{path} is a folder, not a file") from None
    except UnicodeDecodeError as exc:
        raise LedgerError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise LedgerError(f"cannot read {path}: {exc.strerror}") from None


def import_into(db: Optional[str], path: Path, *, fmt: Optional[str] = None, dry_run: bool = False) -> ImportReport:
    """Import a file into the ledger at `db` in one transaction; create the ledger if needed.

    A SQLite file this call created is removed again when the import fails, and a dry
    run rolls everything back.
    """
    return import_into_with(db, lambda session: import_file(session, path, fmt=fmt, dry_run=dry_run),
                            dry_run=dry_run)


def import_into_with(db: Optional[str], work: Any, *, dry_run: bool = False) -> Any:
    """Run `work(session)` as one import transaction on the ledger at `db`, created if
    needed: rolled back on a dry run, and a SQLite file this call created removed again
    when it fails or was only a dry run."""
    from ledger.core.config import resolve_url, sqlite_path
    from ledger.store.db import open_ledger, write_retrying
    from ledger.store.liveness import reap_stale

    file = sqlite_path(resolve_url(db))
    existed = file is None or file.exists()

    def transaction_work(session: Session) -> Any:
        if not dry_run:
            reap_stale(session)
        result = work(session)
        if dry_run:
            session.rollback()
        return result

    try:
        engine = open_ledger(db, create=True)
        result = write_retrying(engine, transaction_work)
        if dry_run and not existed and file is not None:
            engine.dispose()
            _remove_sqlite(file)  # a dry run writes nothing at all, not even an empty ledger
    except BaseException:
        if not existed and file is not None:
            _remove_sqlite(file)
        raise
    return result


def _remove_sqlite(path: Path) -> None:
    """A ledger file this command created and could not fill is not left behind."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def import_file(session: Session, path: Path, *, fmt: Optional[str] = None, dry_run: bool = False) -> ImportReport:
    fmt = detect_format(path, fmt)
    text = read_text(path)
    if fmt == "md":
        report = import_markdown(session, text, source=str(path))
    else:
        report = import_records(session, _read_records(text, fmt, path), source=str(path), fmt=fmt)
    report.dry_run = dry_run
    if not dry_run:
        session.add(
            Import(
                source=str(path),
                sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                format=fmt,
                added=len(report.added),
                changed=len(report.changed),
                unchanged=len(report.unchanged),
            )
        )
    return report


def import_markdown(session: Session, text: str, *, source: str) -> ImportReport:
    try:
        doc = parse_document(text, accept=is_experiment_table)
    except MarkdownError as exc:
        raise LedgerError(f"{source}: no experiment table (a table with a run-name column): {exc}") from None
    table = doc.table
    headers = list(table.headers)
    rows = []
    for index, (cells, line) in enumerate(zip(table.rows, table.row_lines), start=1):
        by_header = dict(zip(headers, cells))
        fields = fields_from_cells(by_header, headers)
        fields.update(cells=by_header, row_line=None if table.aligned else line, source=source, source_row=index)
        rows.append(fields)
    _check_names(rows, source)

    report = ImportReport(source=source, format="md")
    existing = _runs_by_name(session)
    layout_names = {name for name, run in existing.items() if run.cells is not None}
    file_names = [row["name"] for row in rows]
    current = session.scalars(select(Document)).first()
    if current is None or layout_names <= set(file_names):
        # A first import, or an updated version of the same log: the file becomes the
        # document that export writes, and its order becomes the ledger's order.
        report.layout = "created" if current is None else "replaced"
        if current is None:
            current = Document()
            session.add(current)
        current.source = source
        current.before, current.after, current.newline = doc.before, doc.after, doc.newline
        current.final_newline = doc.final_newline
        current.headers, current.aligns, current.aligned = headers, list(table.aligns), table.aligned
        current.header_line, current.align_line = table.header_line, table.align_line
        _merge_rows(session, rows, existing, report)
        _reorder(session, file_names)
    else:
        for header in headers:
            if header not in current.headers:
                report.new_columns.append(header)
        if report.new_columns:
            current.headers = list(current.headers) + report.new_columns
            current.aligns = list(current.aligns) + ["---"] * len(report.new_columns)
            current.header_line = current.align_line = None
        for row in rows:
            # Rows merged from another log have no source line in this document's style.
            row["row_line"] = None
        _merge_rows(session, rows, existing, report)
    session.flush()
    return report


def import_records(session: Session, records: Iterable[dict[str, Any]], *, source: str, fmt: str) -> ImportReport:
    rows = [_record_fields(record, number) for number, record in enumerate(records, start=1)]
    _check_names(rows, source)
    report = ImportReport(source=source, format=fmt)
    existing = _runs_by_name(session)
    parents = {row["name"]: row.pop("parent", None) for row in rows}
    _merge_rows(session, rows, existing, report)
    session.flush()
    by_name = _runs_by_name(session)
    for name, parent in parents.items():
        if parent:
            if parent not in by_name:
                raise LedgerError(f"{source}: run {name!r} names parent {parent!r}, which is not in the ledger")
            by_name[name].parent_id = by_name[parent].id
    session.flush()
    return report


def _read_records(text: str, fmt: str, path: Path) -> list[dict[str, Any]]:
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LedgerError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise LedgerError(f"{path}: expected a JSON list of runs, as `ledger export --format json` writes")
        return data
    import io

    import pandas as pd

    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises several parser error types
        raise LedgerError(f"{path}: not a readable CSV ({exc})") from None
    return frame.to_dict(orient="records")


def _record_fields(record: dict[str, Any], number: int) -> dict[str, Any]:
    """A run's fields from one exported CSV/JSON record; the raw `arguments` is the truth."""

    def text(key: str) -> Optional[str]:
        value = record.get(key)
        if value is None or (isinstance(value, float) and value != value):
            return None
        value = str(value)
        return value if value != "" else None

    def number_or_none(key: str) -> Optional[float]:
        value = text(key)
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            raise LedgerError(f"record {number}: {key} is not a number: {value!r}") from None

    if "name" not in record:
        raise LedgerError("the records have no `name` column; expected what `ledger export --format csv|json` writes")
    args_raw = text("arguments")
    parsed = parse_arguments(args_raw)
    links = record.get("links")
    if isinstance(links, str):
        links = parse_links(links.replace(" ", "<br>")) if links else []
    kind = text("kind") or "logged"
    if kind not in ("logged", "reproduction", "ensemble"):
        raise LedgerError(f"record {number}: unknown kind {kind!r}")
    notes = text("notes")
    lb = number_or_none("lb_miou")
    return {
        "name": text("name") or "",
        "date": text("date"),
        "model": text("model"),
        "args_raw": args_raw,
        "args": parsed.values,
        "args_status": parsed.status,
        "args_error": parsed.error,
        "links": list(links or []),
        "notes": notes,
        "lb_miou": lb if lb is not None else parse_lb(notes),
        "val_miou": number_or_none("val_miou"),
        "lb_val_miou": number_or_none("lb_val_miou"),
        "kind": kind,
        "status": text("status"),
        "parent": text("parent"),
        "source_row": number,
    }


def _check_names(rows: list[dict[str, Any]], source: str) -> None:
    seen: dict[str, int] = {}
    for index, row in enumerate(rows, start=1):
        name = row["name"]
        if not name:
            raise LedgerError(f"{source}: row {index} has no run name, so it cannot be matched to the ledger")
        if name in seen:
            raise LedgerError(f"{source}: rows {seen[name]} and {index} both name the run {name!r}")
        check_name(name, f"{source}: row {index}'s run name")
        seen[name] = index


def _runs_by_name(session: Session) -> dict[str, Run]:
    return {run.name: run for run in session.scalars(select(Run))}


_COMPARED = ("date", "model", "args_raw", "links", "notes", "lb_miou", "cells", "kind")


def _merge_rows(session: Session, rows: list[dict[str, Any]], existing: dict[str, Run], report: ImportReport) -> None:
    position = (session.scalar(select(func.max(Run.position))) or 0) + 1
    for fields in rows:
        run = existing.get(fields["name"])
        if run is None:
            fields.setdefault("position", position)
            position += 1
            session.add(Run(**fields))
            report.added.append(fields["name"])
            continue
        differs = any(k in fields and getattr(run, k) != fields[k] for k in _COMPARED)
        if differs:
            for key, value in fields.items():
                if key in ("position",):
                    continue
                # A logged row's measured values are not in the log; keep what the ledger knows.
                if key in ("val_miou", "lb_val_miou", "status") and value is None:
                    continue
                setattr(run, key, value)
            report.changed.append(fields["name"])
        else:
            if fields.get("row_line") != run.row_line and "row_line" in fields:
                run.row_line = fields["row_line"]
            report.unchanged.append(fields["name"])


def _reorder(session: Session, names_first: list[str]) -> None:
    session.flush()
    runs = list(session.scalars(select(Run).order_by(Run.position, Run.id)))
    rank = {name: i for i, name in enumerate(names_first)}
    runs.sort(key=lambda r: (0, rank[r.name]) if r.name in rank else (1, r.position))
    moved = [(position, run) for position, run in enumerate(runs, start=1) if run.position != position]
    # Positions are unique at every statement: park the moved rows out of the way first.
    for position, run in moved:
        run.position = -position
    session.flush()
    for position, run in moved:
        run.position = position
