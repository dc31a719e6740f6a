"""Importing a log into the ledger: Markdown tables, and the CSV/JSON that export writes.

An import is a merge keyed by run name: rows the ledger lacks are added, rows whose
cells changed are updated in place (keeping their id, so reproductions stay linked), the
rest are left alone. Nothing is written until the whole file has been read and checked.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger.core.args import parse_arguments, parse_value
from ledger.core.errors import LedgerError
from ledger.core.cells import (
    MAX_NAME,
    check_name,
    encoder_header,
    fields_from_cells,
    is_blank_row,
    is_experiment_table,
    parse_lb,
    parse_date,
    parse_links,
    parse_score,
    parse_text,
    roles_for,
)
from ledger.core.markdown import Log, LogTable, MarkdownError, escape_cell, parse_log
from ledger.store.models import Document, Import, Run

FORMATS = ("md", "csv", "json")


# Input limits (documented in the README): a cell or a table past these is refused rather
# than stored and written back out at that size.
MAX_CELL_CHARS = 1_000_000
MAX_COLUMNS = 500
MAX_SECTION = 255  # the runs.section column


@dataclass
class TableReport:
    """What one table of a document gave: its runs, the rows it skipped, how it was read."""

    section: Optional[str]
    line: int
    runs: list[str] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {"row": N, "why": "..."}
    derived_names: int = 0
    columns: dict[str, str] = field(default_factory=dict)  # header -> role ("kept": no role)
    arguments: dict[str, int] = field(default_factory=dict)  # parse status -> cells
    forms: dict[str, int] = field(default_factory=dict)  # argument form -> cells
    unread_dates: list[str] = field(default_factory=list)
    added: int = 0
    changed: int = 0
    unchanged: int = 0


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
    tables: list[TableReport] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["tables"] = [dict(t.__dict__) for t in self.tables]
        return out


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


def import_into(db: Optional[str], path: Path, *, fmt: Optional[str] = None, dry_run: bool = False,
                name_column: Optional[str] = None, args_columns: Optional[list[str]] = None) -> ImportReport:
    """Import a file into the ledger at `db` in one transaction; create the ledger if needed.

    A SQLite file this call created is removed again when the import fails, and a dry
    run rolls everything back.
    """
    return import_into_with(db, lambda session: import_file(session, path, fmt=fmt, dry_run=dry_run,
                                                            name_column=name_column, args_columns=args_columns),
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


def import_file(session: Session, path: Path, *, fmt: Optional[str] = None, dry_run: bool = False,
                name_column: Optional[str] = None, args_columns: Optional[list[str]] = None) -> ImportReport:
    """Import one file (see `import_markdown` and `import_records`) and record the import.

    Args:
        name_column: the column that names a run, where its header does not say so.
        args_columns: CSV/JSON: the columns that are arguments (default: every column
            with no other role); Markdown tables keep their Arguments cell.
    """
    fmt = detect_format(path, fmt)
    text = read_text(path)
    if fmt == "md":
        if args_columns:
            raise LedgerError("--args-columns applies to CSV and JSON; a Markdown log has its Arguments column")
        report = import_markdown(session, text, source=str(path), name_column=name_column)
    else:
        report = import_records(session, _read_records(text, fmt, path), source=str(path), fmt=fmt,
                                args_columns=args_columns, name_column=name_column)
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


def import_markdown(session: Session, text: str, *, source: str, name_column: Optional[str] = None) -> ImportReport:
    """Merge every table of runs in a Markdown document into the ledger.

    A table of runs names them (a run-name column, or `name_column`) or has two of a date,
    a model, arguments, a link and a score column; other tables stay text. Blank rows are
    skipped and kept in the document; rows of a table without names get derived names.
    """
    log = _read_log(text, source, name_column)
    rows: list[dict[str, Any]] = []
    tables: list[TableReport] = []
    layouts: list[dict[str, Any]] = []
    for index, part in enumerate(log.tables):
        report, layout, table_rows = _read_table(part, index, source, name_column)
        tables.append(report)
        layouts.append(layout)
        rows += table_rows
    _name_rows(rows)
    _check_names(rows, source)
    for row in rows:
        for blank in row.pop("blanks_before"):
            blank["before"] = row["name"]
        del row["where"]
    for index, table_report in enumerate(tables):
        table_report.runs = [row["name"] for row in rows if row["table_index"] == index]

    report = ImportReport(source=source, format="md", tables=tables)
    existing = _runs_by_name(session)
    layout_names = {name for name, run in existing.items() if run.table_index is not None}
    file_names = [row["name"] for row in rows]
    current = session.scalars(select(Document)).first()
    if current is None or layout_names <= set(file_names):
        # A first import, or an updated version of the same log: the file becomes the
        # document that export writes, and its order becomes the ledger's order.
        report.layout = "created" if current is None else "replaced"
        if current is None:
            current = Document()
            session.add(current)
        _set_layout(current, source, log.before, layouts)
        _merge_rows(session, rows, existing, report)
        _reorder(session, file_names)
    else:
        # Rows merged from another log go to the last table, with any columns it lacks.
        last = dict((current.tables or [_legacy_layout(current)])[-1])
        for header in dict.fromkeys(h for layout in layouts for h in layout["headers"]):
            if header not in last["headers"]:
                report.new_columns.append(header)
        if report.new_columns:
            last["headers"] = list(last["headers"]) + report.new_columns
            last["aligns"] = list(last["aligns"]) + ["---"] * len(report.new_columns)
            last["header_line"] = last["align_line"] = None
            kept = list(current.tables or [_legacy_layout(current)])
            _set_layout(current, current.source, current.before, kept[:-1] + [last])
        for row in rows:
            # Rows merged from another log have no source line or place in this document:
            # new ones go to its last table, ones it has stay where they are.
            row["row_line"] = None
            del row["table_index"]
        _merge_rows(session, rows, existing, report)
    for table in tables:
        names = set(table.runs)
        table.added = len(names.intersection(report.added))
        table.changed = len(names.intersection(report.changed))
        table.unchanged = len(names.intersection(report.unchanged))
    session.flush()
    return report


def _read_log(text: str, source: str, name_column: Optional[str]) -> Log:
    try:
        log = parse_log(text, accept=lambda headers: _takes(headers, name_column))
    except MarkdownError as exc:
        if not str(exc).startswith("no table"):
            raise LedgerError(f"{source}: {exc}") from None  # a table of runs that cannot be read
        raise LedgerError(
            f"{source}: no table of runs (a table with a run-name column, or with two of a date, model, "
            f"arguments, link or score column): {exc}"
        ) from None
    if name_column is not None and not any(name_column in part.table.headers for part in log.tables):
        raise LedgerError(f"{source}: --name-column {name_column!r} is not a column of any table of runs")
    return log


def _takes(headers: list[str], name_column: Optional[str]) -> bool:
    if len(headers) > MAX_COLUMNS:
        raise MarkdownError(f"a table has {len(headers)} columns; at most {MAX_COLUMNS} are read")
    return is_experiment_table(headers, name_column if name_column in headers else None)


def _read_table(part: LogTable, index: int, source: str,
                name_column: Optional[str]) -> tuple[TableReport, dict[str, Any], list[dict[str, Any]]]:
    table = part.table
    headers = list(table.headers)
    column = name_column if name_column in headers else None
    roles = roles_for(headers, column)
    section = part.section[:MAX_SECTION] if part.section else None
    report = TableReport(section=section, line=part.line,
                         columns={h: role or "kept" for h, role in zip(headers, roles)})
    layout = {
        "headers": headers, "aligns": list(table.aligns), "aligned": table.aligned,
        "header_line": table.header_line, "align_line": table.align_line, "after": part.after,
        "section": part.section, "newline": part.newline, "final_newline": part.final_newline,
        "name_column": column, "blanks": [],
    }
    named = "name" in roles
    rows: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    for number, (cells, line) in enumerate(zip(table.rows, table.row_lines), start=1):
        where = f"{source}, line {part.line + 1 + number}"
        for cell in cells:
            if len(cell) > MAX_CELL_CHARS:
                raise LedgerError(f"{where}: a cell of {len(cell):,} characters; at most {MAX_CELL_CHARS:,} are read")
        if is_blank_row(cells):
            blank = {"before": None, "line": line}
            layout["blanks"].append(blank)
            pending.append(blank)
            report.skipped.append({"row": number, "why": "blank"})
            continue
        by_header = dict(zip(headers, cells))
        fields = fields_from_cells(by_header, headers, column)
        fields.update(cells=by_header, row_line=None if table.aligned else line, source=source, source_row=number,
                      table_index=index, section=section, name_derived=not named, blanks_before=pending,
                      where=where)
        pending = []
        report.arguments[fields["args_status"]] = report.arguments.get(fields["args_status"], 0) + 1
        form = fields.pop("args_form")
        if form:
            report.forms[form] = report.forms.get(form, 0) + 1
        if fields["date"] and fields["date_iso"] is None:
            report.unread_dates.append(fields["date"])
        report.derived_names += not named
        rows.append(fields)
    return report, layout, rows


def _name_rows(rows: list[dict[str, Any]]) -> None:
    """Give every row of a table without a run-name column a name from its own cells.

    The name is its model, encoder (or backbone) and date cells joined by `_`, then the W&B
    run id when its link has one; rows that would share a name take `_2`, `_3` in document
    order. The same file always gives the same names. Two rows of one table with the same
    cells cannot be told apart at all: refused.
    """
    taken = {row["name"] for row in rows if not row["name_derived"]}
    seen_cells: dict[tuple[Any, ...], str] = {}
    for row in rows:
        if not row["name_derived"]:
            continue
        where = row["where"]
        key = (row.get("table_index"), tuple(row["cells"].items()), tuple((row["args"] or {}).items()))
        if key in seen_cells:
            raise LedgerError(f"{where}: the row repeats {seen_cells[key]} cell for cell and the table has no "
                              "run-name column, so the two cannot be told apart; remove one or pass --name-column")
        seen_cells[key] = where.rsplit(", ", 1)[-1]
        base = _derived_base(row)
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name)
        row["name"] = name


_WANDB_RUN = re.compile(r"/runs/([A-Za-z0-9]+)")
_NOT_IN_NAME = re.compile(r"[/\\\x00-\x1f\x7f]+")


def _derived_base(row: dict[str, Any]) -> str:
    cells = row["cells"]
    encoder = encoder_header(list(cells))
    parts = [row["model"], parse_text(cells[encoder]) if encoder else None, row["date"]]
    ids = [m.group(1) for url in row["links"] if (m := _WANDB_RUN.search(url))]
    parts.append(ids[0] if ids else None)
    words = [" ".join(_NOT_IN_NAME.sub("-", p).split()) for p in parts if p]
    base = "_".join(w.replace(" ", "-") for w in words if w) or (row.get("section") or "run")
    return base[:MAX_NAME - 8].strip() or "run"


def _set_layout(document: Document, source: Optional[str], before: str, layouts: list[dict[str, Any]]) -> None:
    first = layouts[0]
    document.source = source
    document.before = before
    document.after = first["after"] if len(layouts) == 1 else ""
    document.newline, document.final_newline = first["newline"], first["final_newline"]
    document.headers, document.aligns, document.aligned = first["headers"], first["aligns"], first["aligned"]
    document.header_line, document.align_line = first["header_line"], first["align_line"]
    document.tables = layouts


def _legacy_layout(document: Document) -> dict[str, Any]:
    """The one table of a document stored before documents kept every table (migration 0006)."""
    return {
        "headers": list(document.headers), "aligns": list(document.aligns), "aligned": document.aligned,
        "header_line": document.header_line, "align_line": document.align_line, "after": document.after,
        "section": None, "newline": document.newline, "final_newline": document.final_newline,
        "name_column": None, "blanks": [],
    }


def import_records(session: Session, records: Iterable[dict[str, Any]], *, source: str, fmt: str,
                   args_columns: Optional[list[str]] = None, name_column: Optional[str] = None) -> ImportReport:
    """Merge CSV or JSON records: those `ledger export` writes, or any table of runs.

    Records of another tool's table are read by column roles, as a Markdown table is;
    their columns with no role are arguments (or only those `args_columns` names, the
    rest being kept as extra cells), so nothing is dropped.
    """
    records = list(records)
    headers = list(dict.fromkeys(key for record in records for key in record))
    if len(headers) > MAX_COLUMNS:
        raise LedgerError(f"{source}: {len(headers)} columns; at most {MAX_COLUMNS} are read")
    if _written_by_ledger(headers) and not args_columns and not name_column:
        rows = [_record_fields(record, number) for number, record in enumerate(records, start=1)]
        tables: list[TableReport] = []
    else:
        table = TableReport(section=None, line=1)
        rows = _foreign_rows(records, headers, source, table, args_columns, name_column)
        _name_rows(rows)
        for row in rows:
            del row["where"], row["blanks_before"]
        table.runs = [row["name"] for row in rows]
        tables = [table]
    _check_names(rows, source)
    report = ImportReport(source=source, format=fmt, tables=tables)
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
    for table in tables:
        table.added, table.changed, table.unchanged = len(report.added), len(report.changed), len(report.unchanged)
    session.flush()
    return report


def _written_by_ledger(headers: list[str]) -> bool:
    return "name" in headers and ("arguments" in headers or "args_status" in headers)


def _foreign_rows(records: list[dict[str, Any]], headers: list[str], source: str, table: TableReport,
                  args_columns: Optional[list[str]], name_column: Optional[str]) -> list[dict[str, Any]]:
    """The fields of each record of another tool's table, by column role."""
    if name_column is not None and name_column not in headers:
        raise LedgerError(f"{source}: --name-column {name_column!r} is not a column; it has: {', '.join(headers)}")
    missing = [c for c in args_columns or () if c not in headers]
    if missing:
        raise LedgerError(f"{source}: --args-columns names {', '.join(missing)}, not a column of it")
    texts = [{h: _cell_text(record.get(h)) for h in headers} for record in records]
    roles = _record_roles(headers, texts, name_column)
    if args_columns:
        roles = ["args_column" if h in args_columns else ("kept" if role is None else role)
                 for h, role in zip(headers, roles)]
    else:
        roles = ["args_column" if role is None else role for role in roles]
    table.columns = {h: "argument" if role == "args_column" else role for h, role in zip(headers, roles)}
    kept = [h for h, role in zip(headers, roles) if role != "args_column"]
    rows = []
    for number, (record, row_text) in enumerate(zip(records, texts), start=1):
        where = f"{source}, record {number}"
        for value in row_text.values():
            if len(value) > MAX_CELL_CHARS:
                raise LedgerError(f"{where}: a value of {len(value):,} characters; at most {MAX_CELL_CHARS:,} are read")
        cells = {h: escape_cell(row_text[h]) for h in kept}
        fields = fields_from_cells(cells, kept, name_column if name_column in kept else None)
        fields.pop("args_form")
        values = {h: _typed(record.get(h)) for h, role in zip(headers, roles)
                  if role == "args_column" and row_text[h] != ""}
        args_role = [h for h, role in zip(headers, roles) if role == "args"]
        if args_role and isinstance(record.get(args_role[0]), dict):
            values = {**record[args_role[0]], **values}
        elif values and fields["args"]:
            values = {**fields["args"], **values}
        if values:
            # Arguments gathered from several columns have no one cell: export renders them all.
            fields.update(args=values, args_status="ok", args_error=None, args_raw=None)
        named = "name" in roles
        fields.update(cells=cells, source=source, source_row=number, name_derived=not named, where=where,
                      blanks_before=[])
        table.arguments[fields["args_status"]] = table.arguments.get(fields["args_status"], 0) + 1
        if fields["date"] and fields["date_iso"] is None:
            table.unread_dates.append(fields["date"])
        table.derived_names += not named
        rows.append(fields)
    return rows


def _cell_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _typed(value: Any) -> Any:
    """A CSV cell as the value it writes (`0.001` a number, `True` a boolean); JSON values as they are."""
    return parse_value(value) if isinstance(value, str) else value


# Cells that say "no value" in a score column.
_NO_VALUE = {"", "-", "—", "n/a", "na", "none", "null", "nan", "no submission", "not submitted", "tbd", "?"}


def _record_roles(headers: list[str], texts: list[dict[str, str]], name_column: Optional[str]) -> list[Optional[str]]:
    """Roles of a record table's columns; a metric-named column that holds only words
    (`loss` = `focal`) is an argument, not a score."""
    roles = roles_for(headers, name_column)
    for k, (header, role) in enumerate(zip(headers, roles)):
        if role == "score":
            values = [row[header] for row in texts]
            if not any(parse_score(v) is not None for v in values) and any(
                    v.strip().lower() not in _NO_VALUE for v in values):
                roles[k] = None
    return roles


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
    args, args_status, args_error = parsed.values, parsed.status, parsed.error
    columns = {k[len("args."):]: record[k] for k in record if k.startswith("args.") and _cell_text(record[k]) != ""}
    if args_raw is None and columns:
        # A run whose arguments came as values (a CSV's columns, a tracker's config) has no cell.
        args, args_status, args_error = {k: _typed(v) for k, v in columns.items()}, "ok", None
    scores = {k[len("scores."):]: number_or_none(k) for k in record if k.startswith("scores.")}
    if isinstance(record.get("scores"), dict):
        scores = dict(record["scores"])
    links = record.get("links")
    if isinstance(links, str):
        links = parse_links(links.replace(" ", "<br>")) if links else []
    kind = text("kind") or "logged"
    if kind not in ("logged", "reproduction", "ensemble"):
        raise LedgerError(f"record {number}: unknown kind {kind!r}")
    notes = text("notes")
    lb = number_or_none("lb_miou")
    # Columns an older export did not write are left as the ledger has them.
    later = {"section": text("section")} if "section" in record else {}
    if scores or "scores" in record:
        later["scores"] = scores or None
    return later | {
        "name": text("name") or "",
        "date": text("date"),
        "model": text("model"),
        "args_raw": args_raw,
        "args": args,
        "args_status": args_status,
        "args_error": args_error,
        "links": list(links or []),
        "notes": notes,
        "lb_miou": lb if lb is not None else parse_lb(notes),
        "date_iso": parse_date(text("date")),
        "val_miou": number_or_none("val_miou"),
        "lb_val_miou": number_or_none("lb_val_miou"),
        "kind": kind,
        "status": text("status"),
        "parent": text("parent"),
        "source_row": number,
    }


def _check_names(rows: list[dict[str, Any]], source: str) -> None:
    seen: dict[str, str] = {}
    for index, row in enumerate(rows, start=1):
        name = row["name"]
        where = row.get("where") or f"{source}: row {index}"
        if not name:
            raise LedgerError(f"{where} has no run name, so it cannot be matched to the ledger"
                              " (a row with no cells at all is skipped as blank)")
        if name in seen:
            place = where.rsplit(", ", 1)
            raise LedgerError(f"{place[0]}: {seen[name]} and {place[-1]} both name the run {name!r}")
        check_name(name, f"{where}: the run name")
        seen[name] = where.rsplit(", ", 1)[-1]


def _runs_by_name(session: Session) -> dict[str, Run]:
    return {run.name: run for run in session.scalars(select(Run))}


_COMPARED = ("date", "model", "args_raw", "args", "args_status", "links", "notes", "lb_miou", "scores", "cells",
             "kind", "section", "table_index")


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
