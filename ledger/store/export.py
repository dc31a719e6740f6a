"""Writing the ledger back out: the Markdown document, or one row per run as CSV/JSON.

SQLAlchemy and pandas are imported inside the functions that use them: the flat export
also runs on the stdlib sqlite3 reader of `ledger.store.sqlite_reader`.
"""

from __future__ import annotations

import csv
import gc
import io
import json
import re
import sqlite3
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Sequence, Union

from ledger.core.errors import LedgerError
from ledger.core.cells import DEFAULT_HEADERS, link_label_of, metric_name, roles_for, row_cells
from ledger.core.markdown import Log, LogTable, Table, render_log, split_row

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

EXPORT_FORMATS = ("md", "csv", "json")


def export_text(db: Optional[str], fmt: str, *, include_failed: bool = False) -> str:
    """The ledger at `db` as text: the Markdown log ("md"), or one row per run ("csv", "json").

    The Markdown log is the team's record of results: runs that failed or were
    interrupted stay out of it unless `include_failed`. CSV and JSON carry every run and
    its status.
    """
    if fmt not in EXPORT_FORMATS:
        raise LedgerError(f"unknown format {fmt!r}; use one of: {', '.join(EXPORT_FORMATS)}")
    if fmt == "md":
        from ledger.store.db import open_ledger, transaction

        with transaction(open_ledger(db, read_only=True), write=False) as session:
            return export_markdown(session, include_failed=include_failed)
    from ledger.store.readers import reading

    with reading(db) as reader:
        return export_flat(reader.source, fmt)


def write_file(path: Path, text: str) -> None:
    """Write `text` to `path` all at once: through a temporary file renamed into place."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LedgerError(f"cannot write {path}: {exc.strerror}") from None


# Runs whose row in the Markdown log would read as a result they never produced (queued
# and running ones have none yet).
NOT_RESULTS = ("failed", "interrupted", "queued", "running")


def export_markdown(session: Session, *, include_failed: bool = False) -> str:
    """The log as a Markdown document: the imported document, every table in place, with
    every run as a row of its table (failed, interrupted, queued and running ones only with
    `include_failed`).

    Rows whose cells are unchanged since import are written exactly as they were read, and
    blank placeholder rows where they were; changed fields and rows added later
    (reproductions, in their parent's table; others in the last table) are rendered in
    the same style.
    """
    from sqlalchemy import select

    from ledger.store.models import Document, Run

    document = session.scalars(select(Document)).first()
    query = select(Run).order_by(Run.position, Run.id)
    if not include_failed:
        query = query.where(Run.status.is_(None) | Run.status.not_in(NOT_RESULTS))
    runs = list(session.scalars(query))
    if document is None:
        layouts, before = [_default_layout(runs)], ""
    else:
        layouts, before = document_tables(document), document.before
    parts = []
    for layout, members in zip(layouts, _by_table(session, runs, len(layouts))):
        parts.append(_render_part(layout, members))
    return render_log(Log(before=before, tables=parts))


def document_tables(document: Any) -> list[dict[str, Any]]:
    """The layout of each table of the exported document (one, for a ledger from before
    documents kept every table)."""
    if document.tables:
        return list(document.tables)
    return [{
        "headers": list(document.headers), "aligns": list(document.aligns), "aligned": document.aligned,
        "header_line": document.header_line, "align_line": document.align_line, "after": document.after,
        "section": None, "newline": document.newline, "final_newline": document.final_newline,
        "name_column": None, "blanks": [],
    }]


def _by_table(session: Session, runs: list[Any], count: int) -> list[list[Any]]:
    """The runs of each table: where they were imported, else their parent's, else the last."""
    from sqlalchemy import select

    from ledger.store.models import Run

    parents = {r.parent_id for r in runs if r.table_index is None and r.parent_id is not None}
    place = {id_: index for id_, index in session.execute(select(Run.id, Run.table_index).where(Run.id.in_(parents)))}
    tables: list[list[Any]] = [[] for _ in range(count)]
    for run in runs:
        index = run.table_index if run.table_index is not None else place.get(run.parent_id)
        if index is None or not 0 <= index < count:
            index = count - 1
        tables[index].append(run)
    return tables


def _render_part(layout: dict[str, Any], runs: list[Any]) -> LogTable:
    headers = list(layout["headers"])
    label = link_label_of([r.cells for r in runs if r.cells], headers)
    table = Table(headers=headers, aligns=list(layout["aligns"]), aligned=layout["aligned"],
                  header_line=layout["header_line"], align_line=layout["align_line"])
    blanks = list(layout.get("blanks") or [])
    names = {run.name for run in runs}
    empty = [""] * len(headers)

    def add(cells: list[str], line: Optional[str]) -> None:
        table.rows.append(cells)
        table.row_lines.append(line if line is not None and split_row(line) == cells else None)

    for run in runs:
        for blank in blanks:
            if blank["before"] == run.name:
                add(list(empty), blank["line"])
        add(row_cells(run, headers, link_label=label, name_column=layout.get("name_column")), run.row_line)
    for blank in blanks:  # trailing placeholders, and those whose next row is gone
        if blank["before"] is None or blank["before"] not in names:
            add(list(empty), blank["line"])
    return LogTable(table=table, after=layout["after"], section=layout.get("section"),
                    newline=layout["newline"], final_newline=layout["final_newline"])


def _default_layout(runs: list[Any]) -> dict[str, Any]:
    """The table of a ledger with no document (filled from CSV, JSON or trackers): the seed
    log's columns, then a column for every other field a run holds a value in."""
    headers = list(DEFAULT_HEADERS)
    covered = set(roles_for(headers))
    for run in runs:
        for header in run.cells or {}:
            role = roles_for([header])[0]
            if header not in headers and (role is None or role == "score" or role not in covered):
                headers.append(header)
                covered.add(role)
    if "lb" not in covered and any(run.lb_miou is not None for run in runs):
        headers.append("LB score")
    known = {metric_name(h) for h, role in zip(headers, roles_for(headers)) if role in ("score", "lb")}
    for run in runs:
        for metric in run.scores or {}:
            if metric not in known:
                headers.append(metric)
                known.add(metric)
    return {"headers": headers, "aligns": ["---"] * len(headers), "aligned": True, "header_line": None,
            "align_line": None, "after": "", "section": None, "newline": "\n", "final_newline": True,
            "name_column": None, "blanks": []}


# The flat export's columns, in order, and the runs column each is read from (None: the
# parent's name); parsed arguments follow as `args.<key>`. Both read paths select from here.
FLAT_FIELDS = (
    ("name", "name"), ("date", "date"), ("model", "model"), ("kind", "kind"), ("parent", None),
    ("status", "status"), ("lb_miou", "lb_miou"), ("val_miou", "val_miou"), ("lb_val_miou", "lb_val_miou"),
    ("links", "links"), ("notes", "notes"), ("arguments", "args_raw"), ("args_status", "args_status"),
    ("job_hash", "job_hash"), ("created_at", "created_at"), ("updated_at", "updated_at"),
)
FLAT_COLUMNS = tuple(name for name, _ in FLAT_FIELDS)
_FLAT_SQL = (
    "SELECT " + ", ".join(f"r.{column}" if column else "p.name" for _, column in FLAT_FIELDS) + ", r.args"
    " FROM runs AS r LEFT JOIN runs AS p ON p.id = r.parent_id ORDER BY r.position, r.id"
)
_NAN = float("nan")
_NONE = type(None)


def flat_rows(source: Union[Session, sqlite3.Connection]) -> Iterable[Sequence[Any]]:
    """The runs in ledger order, as read: the FLAT_COLUMNS fields, then the parsed arguments.

    Through a SQLAlchemy session, JSON comes decoded and times as datetimes; on a sqlite3
    connection (`ledger.store.sqlite_reader`) both stay text, for `flat_columns` to decode in one pass.
    """
    if isinstance(source, sqlite3.Connection):
        return source.execute(_FLAT_SQL)
    from sqlalchemy import select
    from sqlalchemy.orm import aliased

    from ledger.store.models import Run

    parent = aliased(Run)
    fields = [getattr(Run, column) if column else parent.name for _, column in FLAT_FIELDS]
    query = (
        select(*fields, Run.args)
        .outerjoin(parent, Run.parent_id == parent.id)
        .order_by(Run.position, Run.id)
    )
    return source.execute(query)


def flat_records(source: Union[Session, sqlite3.Connection]) -> list[dict[str, Any]]:
    """One plain dict per run, in ledger order, with parsed arguments as `args.<key>` entries."""
    json_text = isinstance(source, sqlite3.Connection)
    records = []
    for row in flat_rows(source):
        record = dict(zip(FLAT_COLUMNS, row))
        links, args = _decoded((record["links"], row[-1]), json_text)
        record["links"] = " ".join(links or [])
        record["created_at"] = _iso(record["created_at"])
        record["updated_at"] = _iso(record["updated_at"])
        for key, value in (args or {}).items():
            record[f"args.{key}"] = _arg_value(value)
        records.append(record)
    return records


def flat_columns(rows: Iterable[Sequence[Any]], *, json_text: bool) -> dict[str, list[Any]]:
    """The flat export as columns: FLAT_COLUMNS, then `args.<key>` in key order.

    The values are those of `flat_records`, and NaN where a run lacks an argument, as
    pandas fills the missing key of a record. `json_text`: the rows come from sqlite3.
    """
    fields = list(zip(*rows)) or [()] * (len(FLAT_COLUMNS) + 1)
    columns: dict[str, list[Any]] = {name: list(values) for name, values in zip(FLAT_COLUMNS, fields)}
    columns["links"] = _spaced_links(columns["links"], json_text)
    columns["created_at"] = _iso_all(columns["created_at"])
    columns["updated_at"] = _iso_all(columns["updated_at"])
    runs = len(columns["name"])
    by_key: dict[str, list[Any]] = {}
    # One run's arguments at a time: a 100k-run ledger would hold 100k dicts otherwise.
    decode = json.JSONDecoder().decode
    for row, args in enumerate(fields[-1]):
        if json_text and args is not None:
            args = decode(args)
        for key, value in (args or {}).items():
            column = by_key.get(key)
            if column is None:
                column = by_key[key] = [_NAN] * runs
            column[row] = value
    for key in sorted(by_key):
        values = by_key[key]
        if any(issubclass(kind, (list, dict)) for kind in set(map(type, values))):
            values = [_arg_value(v) for v in values]
        columns[f"args.{key}"] = values
    return columns


def export_flat(source: Union[Session, sqlite3.Connection], fmt: str) -> str:
    """CSV or JSON text of `flat_records`, through pandas (imported here, never at start-up).

    Args:
        source: a SQLAlchemy session, or a sqlite3 connection (`ledger.store.sqlite_reader`).
        fmt: "csv" or "json".
    """
    if fmt not in ("csv", "json"):
        raise ValueError(f"unknown format {fmt!r}")
    with _collector_paused():
        columns = flat_columns(flat_rows(source), json_text=isinstance(source, sqlite3.Connection))
        if fmt == "csv":
            return flat_csv(columns)
        return _frame(columns).to_json(orient="records", force_ascii=False, indent=2) + "\n"


@contextmanager
def _collector_paused() -> Iterator[None]:
    # Millions of objects that all live until the text is written: the cyclic garbage
    # collector would walk them again and again, for nothing (a tenth of the export's time).
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _iso(value: Any) -> Optional[str]:
    if value is None:
        return None
    # sqlite3 hands back SQLAlchemy's text; parse it as SQLAlchemy would, so the text is the same.
    return (value if isinstance(value, datetime) else datetime.fromisoformat(value)).isoformat()


# SQLAlchemy's SQLite text for a time; its isoformat() is the same text with a T, and
# without the microseconds when they are zero.
_SQLITE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}")


def _iso_all(values: list[Any]) -> list[Optional[str]]:
    if set(map(type, values)) == {str} and all(map(_SQLITE_TIME.fullmatch, values)):
        return [f"{v[:10]}T{v[11:19]}" if v.endswith(".000000") else f"{v[:10]}T{v[11:]}" for v in values]
    return [_iso(v) for v in values]


# A list of strings as json.dumps writes it when they need no escapes: its items can be
# cut out of the text without a JSON parser.
_PLAIN_ITEM = r'"[^"\\\x00-\x1f]*"'
_PLAIN_LIST = re.compile(rf"\[\]|\[{_PLAIN_ITEM}(?:, {_PLAIN_ITEM})*\]")


def _spaced_links(values: list[Any], json_text: bool) -> list[str]:
    """Each run's links, joined by spaces."""
    if json_text:
        texts = ["[]" if v is None else v for v in values]
        if all(map(_PLAIN_LIST.fullmatch, texts)):
            return [text[2:-2].replace('", "', " ") for text in texts]
    return [" ".join(links or []) for links in _decoded(values, json_text)]


def _decoded(values: Sequence[Any], json_text: bool) -> list[Any]:
    if not json_text:
        return list(values)
    decode = json.JSONDecoder().decode
    return [None if v is None else decode(v) for v in values]


def _arg_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _frame(columns: dict[str, list[Any]]) -> Any:
    import pandas as pd

    # Rows as tuples go through the same per-column type inference as rows as dicts do.
    return pd.DataFrame.from_records(list(zip(*columns.values())), columns=list(columns))


def flat_csv(columns: dict[str, list[Any]]) -> str:
    """The text pandas' `to_csv(index=False, lineterminator="\\n")` writes for these columns, faster.

    pandas decides how numbers, booleans and mixed columns look (`4` or `4.0`, `True`), so
    it still writes those. Text columns hold most of the bytes, and for them pandas adds
    nothing to the csv module's quoting, which is done here a whole column at a time.
    """
    specials = _csv_specials()
    rows = len(columns["name"])
    if specials is None or rows == 0:
        return _frame(columns).to_csv(index=False, lineterminator="\n")
    cells: dict[str, list[str]] = {}
    others: dict[str, list[Any]] = {}
    for name, values in columns.items():
        kinds = set(map(type, values))
        if _is_text(values, kinds):
            cells[name] = _quoted(values if kinds == {str} else [v if type(v) is str else "" for v in values], specials)
        else:
            others[name] = values
    if others:
        frame = _frame(others)
        for name in others:
            lines = frame[[name]].to_csv(index=False, header=False, lineterminator="\n").split("\n")
            lines.pop()
            if len(lines) != rows:  # a line break inside a field: let pandas write it all
                return _frame(columns).to_csv(index=False, lineterminator="\n")
            # csv quotes the empty field of a one-field row; in a wider row it is left empty.
            cells[name] = ["" if line == '""' else line for line in lines]
    return _csv_line(list(columns)) + "\n".join(map(",".join, zip(*(cells[name] for name in columns)))) + "\n"


def _csv_line(fields: list[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    return buffer.getvalue()


@lru_cache(maxsize=1)
def _csv_specials() -> Optional[re.Pattern[str]]:
    """The characters that make the csv module, set up as pandas sets it up, quote a field.

    Asked of the running Python rather than assumed (versions differ on `\\r`). None if
    the module quotes some other way than expected; then pandas writes everything.
    """
    if _csv_line(["", "x"]) != ",x\n" or _csv_line(['a"b', "x"]) != '"a""b",x\n':
        return None
    chars = [chr(code) for code in range(128) if _csv_line([chr(code), "x"]).startswith('"')]
    return re.compile("[" + re.escape("".join(chars)) + "]")


def _is_text(values: list[Any], kinds: set[type]) -> bool:
    """Only strings and missing values (None, NaN): pandas writes the strings as they are."""
    if kinds <= {str, _NONE}:
        return True
    return kinds <= {str, _NONE, float} and all(v != v for v in values if type(v) is float)


def _quoted(texts: list[str], specials: re.Pattern[str]) -> list[str]:
    search = specials.search
    # Most columns need no quotes at all; one search per few thousand values says so.
    if not any(search("".join(texts[i:i + 4096])) for i in range(0, len(texts), 4096)):
        return texts
    return ['"' + t.replace('"', '""') + '"' if search(t) else t for t in texts]
