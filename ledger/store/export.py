"""Writing the ledger back out: the Markdown document, or one row per run as CSV/JSON.

SQLAlchemy is imported inside the functions that use it: the flat export also runs on the
stdlib sqlite3 reader of `ledger.store.sqlite_reader`. The flat export streams (`write_flat`)
and writes what pandas wrote when it was made through a DataFrame, without pandas.
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


def export_to(db: Optional[str], fmt: str, out: Any, *, include_failed: bool = False) -> None:
    """Write the export (see `export_text`) to the text stream `out`. CSV and JSON go out a
    chunk of runs at a time (`write_flat`), so memory does not grow with the runs."""
    if fmt not in ("csv", "json"):
        out.write(export_text(db, fmt, include_failed=include_failed))
        return
    from ledger.store.readers import reading

    with reading(db) as reader:
        write_flat(reader.source, fmt, out)


def write_export(path: Path, write: Any) -> None:
    """Call `write(fh)` on a temporary file next to `path`, renamed into place once it is
    complete: a failed or interrupted export leaves no half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            write(fh)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LedgerError(f"cannot write {path}: {exc.strerror}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
# parent's name). Both read paths select from here.
FLAT_FIELDS = (
    ("name", "name"), ("date", "date"), ("model", "model"), ("kind", "kind"), ("parent", None),
    ("status", "status"), ("lb_miou", "lb_miou"), ("val_miou", "val_miou"), ("lb_val_miou", "lb_val_miou"),
    ("links", "links"), ("notes", "notes"), ("arguments", "args_raw"), ("args_status", "args_status"),
    ("job_hash", "job_hash"), ("created_at", "created_at"), ("updated_at", "updated_at"), ("section", "section"),
)
FLAT_COLUMNS = tuple(name for name, _ in FLAT_FIELDS)
# JSON object columns of runs whose keys follow FLAT_COLUMNS as columns of their own,
# `<column>.<key>`, keys in sorted order, one object column after the other. Flattening
# another one is adding its name here.
FLAT_OBJECTS = ("args", "scores")  # scores: a log's score columns, {metric: number or None}
# Fields written other than as they are read: a JSON list joined by spaces, a time in ISO form.
_LISTS = ("links",)
_TIMES = ("created_at", "updated_at")
# Runs read, formatted and written at a time: the export's memory, whatever the number of runs.
FLAT_CHUNK = 2000

_FROM = " FROM runs AS r LEFT JOIN runs AS p ON p.id = r.parent_id ORDER BY r.position, r.id"
_FLAT_SQL = ("SELECT " + ", ".join([f"r.{c}" if c else "p.name" for _, c in FLAT_FIELDS]
                                   + [f"r.{c}" for c in FLAT_OBJECTS]) + _FROM)
_NONE = type(None)
_INT64 = (-2**63, 2**63 - 1)
_UINT64_MAX = 2**64 - 1


def flat_rows(source: Union[Session, sqlite3.Connection]) -> Iterable[Sequence[Any]]:
    """The runs in ledger order, as read: the FLAT_COLUMNS fields, then the FLAT_OBJECTS columns.

    Through a SQLAlchemy session, JSON comes decoded and times as datetimes; on a sqlite3
    connection (`ledger.store.sqlite_reader`) both stay text.
    """
    if isinstance(source, sqlite3.Connection):
        return source.execute(_FLAT_SQL)
    return source.execute(_flat_query())


def _flat_query() -> Any:
    from sqlalchemy import select
    from sqlalchemy.orm import aliased

    from ledger.store.models import Run

    parent = aliased(Run)
    fields = [getattr(Run, column) if column else parent.name for _, column in FLAT_FIELDS]
    return (select(*fields, *(getattr(Run, c) for c in FLAT_OBJECTS))
            .outerjoin(parent, Run.parent_id == parent.id)
            .order_by(Run.position, Run.id))


def flat_records(source: Union[Session, sqlite3.Connection]) -> list[dict[str, Any]]:
    """One plain dict per run, in ledger order, with the FLAT_OBJECTS keys as `<column>.<key>` entries."""
    json_text = isinstance(source, sqlite3.Connection)
    records = []
    for row in flat_rows(source):
        record = dict(zip(FLAT_COLUMNS, row))
        links = record["links"]
        record["links"] = " ".join((json.loads(links) if json_text and links is not None else links) or [])
        record["created_at"] = _iso(record["created_at"])
        record["updated_at"] = _iso(record["updated_at"])
        for column, value in zip(FLAT_OBJECTS, row[len(FLAT_COLUMNS):]):
            for key, item in _as_object(json.loads(value) if json_text and value is not None else value).items():
                record[f"{column}.{key}"] = _arg_value(item)
        records.append(record)
    return records


def export_flat(source: Union[Session, sqlite3.Connection], fmt: str) -> str:
    """The flat export as one string (`write_flat` streams it instead)."""
    buffer = io.StringIO()
    write_flat(source, fmt, buffer)
    return buffer.getvalue()


def write_flat(source: Union[Session, sqlite3.Connection], fmt: str, out: io.TextIOBase) -> None:
    """Write every run to `out`, one row per run, as CSV or JSON, a chunk of runs at a time.

    The text is what pandas wrote when this export built a DataFrame of every run
    (`to_csv(index=False)`, `to_json(orient="records", force_ascii=False, indent=2)`),
    byte for byte, without pandas: a key missing from some runs is an empty cell (null),
    and an integer column with a gap, a null or a float is written as floats, as pandas
    types it. That needs each column's kinds of values before the first row, so the runs
    are read twice: once for what each flattened column holds, once to write them.

    Args:
        source: a SQLAlchemy session, or a sqlite3 connection (`ledger.store.sqlite_reader`).
        fmt: "csv" or "json".
        out: a text stream.
    """
    if fmt not in ("csv", "json"):
        raise ValueError(f"unknown format {fmt!r}")
    with _collector_paused():
        if isinstance(source, sqlite3.Connection):
            layout = _sqlite_layout(source)
            chunks = _sqlite_chunks(source)
            again = None
        else:
            _one_snapshot(source)
            layout = _session_stats(source).layout()
            chunks = _session_chunks(source)
            again = _Stats()  # checks that the second reading saw what the first did
        names = list(FLAT_COLUMNS) + [f"{FLAT_OBJECTS[i]}.{key}" for i, key, _ in layout]
        text = _CsvText(names) if fmt == "csv" else _JsonText(names)
        out.write(text.begin)
        first = True
        for fields, objects in chunks:
            if again is not None:
                again.add(objects)
            columns = [text.cells(values, False) for values in fields]
            columns += [text.cells([d.get(key) for d in objects[i]], as_float) for i, key, as_float in layout]
            if not first:
                out.write(text.between)
            out.write(text.rows(columns))
            first = False
        out.write(text.end)
    if again is not None and again.layout() != layout:
        raise LedgerError("the ledger changed while it was exported; the output is not one state of it: export again")


@contextmanager
def _collector_paused() -> Iterator[None]:
    # Every object of a chunk dies by reference counting; the cyclic garbage collector
    # would walk the millions of them made on the way, for nothing.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# ------------------------------------------------------------------ the kinds of each column


def _ints_as_floats(types: set[type], low: int, high: int) -> bool:
    """Whether pandas makes a column holding these kinds of values float64, which writes its ints as floats.

    Ints with a gap (a missing key or null) or a float are float64; ints alone are int64
    or uint64 and written as they are, as are ints among text, bools or lists (an object
    column), and ints no 64-bit type holds.
    """
    if int not in types or types - {int, float, _NONE}:
        return False
    if low < _INT64[0] or high > _UINT64_MAX or (low < 0 and high > _INT64[1]):
        return False
    return types != {int}


class _Column:
    """What one flattened column has held so far: the kinds of its values (None for a gap), its int range."""

    __slots__ = ("types", "low", "high")

    def __init__(self) -> None:
        self.types: set[type] = set()
        self.low = self.high = 0

    def add(self, values: list[Any]) -> None:
        kinds = set(map(type, values))
        self.types |= kinds
        if int in kinds:
            ints = values if len(kinds) == 1 else [v for v in values if type(v) is int]
            self.low, self.high = min(self.low, min(ints)), max(self.high, max(ints))


class _Stats:
    """The flattened columns of every FLAT_OBJECTS column, read a chunk of runs at a time."""

    def __init__(self) -> None:
        self.columns: list[dict[str, _Column]] = [{} for _ in FLAT_OBJECTS]
        self.rows = 0

    def add(self, objects: list[list[dict[str, Any]]]) -> None:
        for dicts, columns in zip(objects, self.columns):
            keys = set().union(*dicts)
            for key in columns.keys() - keys:
                columns[key].types.add(_NONE)  # absent from this whole chunk
            for key in keys:
                column = columns.get(key)
                if column is None:
                    column = columns[key] = _Column()
                    if self.rows:
                        column.types.add(_NONE)  # absent from the chunks before
                column.add([d.get(key) for d in dicts])
        self.rows += len(objects[0]) if objects else 0

    def layout(self) -> list[tuple[int, str, bool]]:
        """(index into FLAT_OBJECTS, key, whether its ints are written as floats), in column order."""
        return [(i, key, _ints_as_floats(c.types, c.low, c.high))
                for i, columns in enumerate(self.columns) for key, c in sorted(columns.items())]


def _as_object(value: Any) -> dict[str, Any]:
    if type(value) is dict:
        return value
    if not value:
        return {}
    raise LedgerError(f"a run holds {value!r} where the flat export expects a JSON object ({', '.join(FLAT_OBJECTS)})")


def _session_stats(session: Session) -> _Stats:
    from sqlalchemy import select

    from ledger.store.models import Run

    stats = _Stats()
    query = (select(*(getattr(Run, c) for c in FLAT_OBJECTS)).order_by(Run.position, Run.id)
             .execution_options(yield_per=FLAT_CHUNK))
    for part in session.execute(query).partitions():
        stats.add([[_as_object(v) for v in values] for values in zip(*part)])
    return stats


def _one_snapshot(session: Session) -> None:
    # Both readings must see the same runs. PostgreSQL's default READ COMMITTED gives each
    # statement its own snapshot; REPEATABLE READ gives the transaction one, if it has not
    # yet run a statement (else SQLAlchemy keeps the connection it has, and `write_flat`
    # reports a change between the readings).
    import warnings

    if session.get_bind().dialect.name != "postgresql":
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


# SQLite's json_each types, as the Python types json.loads makes of them.
_JSON_TYPES = {"integer": int, "real": float, "text": str, "true": bool, "false": bool, "null": _NONE,
               "array": list, "object": dict}


def _sqlite_layout(conn: sqlite3.Connection) -> list[tuple[int, str, bool]]:
    """`_Stats.layout` in SQL, without decoding any JSON in Python.

    Falls back to reading the JSON in Python where SQLite cannot say what json.loads
    would make: text it refuses (NaN, Infinity), ints beyond 64 bits.
    """
    layout = []
    for index, column in enumerate(FLAT_OBJECTS):
        try:
            types = _sqlite_types(conn, column)
        except sqlite3.OperationalError:
            types = None
        if types is None:
            stats = _Stats()
            for objects in _sqlite_objects(conn, column):
                stats.add([objects])
            columns = stats.columns[0]
            layout += [(index, key, _ints_as_floats(c.types, c.low, c.high)) for key, c in sorted(columns.items())]
        else:
            layout += [(index, key, _ints_as_floats(kinds, 0, 0)) for key, kinds in sorted(types.items())]
    return layout


def _sqlite_types(conn: sqlite3.Connection, column: str) -> Optional[dict[str, set[type]]]:
    """The kinds of values each key of `column` holds, a gap (None) included where it
    decides how the column is written; None where SQLite cannot tell."""
    types: dict[str, set[type]] = {}
    # An int beyond 64 bits is 'integer' to json_each, but its value is a float.
    query = (f"SELECT DISTINCT j.key, j.type, CASE WHEN j.type = 'integer' THEN typeof(j.atom) END"
             f" FROM runs AS r, json_each(r.{column}) AS j")
    for key, kind, held in conn.execute(query):
        if held == "real":
            return None
        if type(key) is str:  # not an element of a run's array, or a run's scalar
            types.setdefault(key, set()).add(_JSON_TYPES[kind])
    # A gap matters only to a column of ints and nothing else: does some run lack the key?
    only_ints = [key for key, kinds in types.items() if kinds == {int}]
    if only_ints:
        nested = any(kinds & {list, dict} for kinds in types.values())
        tests, params = [], []
        for key in only_ints:
            exact = f"NOT EXISTS (SELECT 1 FROM json_each(r.{column}) AS j WHERE j.key = ?)"
            if nested:
                tests.append(f"max({exact})")
                params.append(key)
            else:
                # json.dumps writes a top-level key as `{"key": ` or `, "key": `, neither of which
                # can occur inside a string; a run without either is checked exactly.
                # (A CASE, not AND: SQLite would run the subquery for every run.)
                quoted = json.dumps(key)
                found = f"instr(r.{column}, ?) > 0 OR instr(r.{column}, ?) > 0"
                tests.append(f"max(CASE WHEN {found} THEN 0 ELSE {exact} END)")
                params += [f", {quoted}: ", f"{{{quoted}: ", key]
        lacking = conn.execute(f"SELECT {', '.join(tests)} FROM runs AS r", params).fetchone()
        for key, lacks in zip(only_ints, lacking):
            if lacks:
                types[key].add(_NONE)
    return types


# ------------------------------------------------------------------ reading the runs in chunks

_SCAN = json.JSONDecoder().scan_once
_ZEROS = [0] * FLAT_CHUNK


def _sqlite_chunks(conn: sqlite3.Connection) -> Iterator[tuple[list[Sequence[Any]], list[list[dict]]]]:
    fields = len(FLAT_FIELDS)
    lists = [i for i, (name, _) in enumerate(FLAT_FIELDS) if name in _LISTS]
    times = [i for i, (name, _) in enumerate(FLAT_FIELDS) if name in _TIMES]
    cursor = conn.execute(_FLAT_SQL)
    while rows := cursor.fetchmany(FLAT_CHUNK):
        columns: list[Sequence[Any]] = list(zip(*rows))
        for i in lists:
            columns[i] = _spaced_links(columns[i])
        for i in times:
            columns[i] = _iso_all(columns[i])
        yield columns[:fields], [_decoded_objects(texts) for texts in columns[fields:]]


def _sqlite_objects(conn: sqlite3.Connection, column: str) -> Iterator[list[dict[str, Any]]]:
    cursor = conn.execute(f"SELECT r.{column} FROM runs AS r ORDER BY r.position, r.id")
    while rows := cursor.fetchmany(FLAT_CHUNK):
        yield _decoded_objects([text for (text,) in rows])


def _decoded_objects(texts: Sequence[Optional[str]]) -> list[dict[str, Any]]:
    """Each run's JSON object text decoded (None: no keys), at the C decoder's speed."""
    if None in texts:
        texts = ["null" if t is None else t for t in texts]
    try:
        values, ends = zip(*map(_SCAN, texts, _ZEROS))
        if list(ends) != list(map(len, texts)):
            raise ValueError("whitespace or more after the value")
    except (StopIteration, ValueError):
        values = tuple(json.loads(t) for t in texts)  # json.loads' own errors, and its leniency
    if set(map(type, values)) == {dict}:
        return list(values)
    return [_as_object(v) for v in values]


def _session_chunks(session: Session) -> Iterator[tuple[list[list[Any]], list[list[dict]]]]:
    fields = len(FLAT_FIELDS)
    lists = [i for i, (name, _) in enumerate(FLAT_FIELDS) if name in _LISTS]
    times = [i for i, (name, _) in enumerate(FLAT_FIELDS) if name in _TIMES]
    for part in session.execute(_flat_query().execution_options(yield_per=FLAT_CHUNK)).partitions():
        columns = [list(values) for values in zip(*part)]
        for i in lists:
            columns[i] = [" ".join(v or []) for v in columns[i]]
        for i in times:
            columns[i] = [_iso(v) for v in columns[i]]
        yield columns[:fields], [[_as_object(v) for v in values] for values in columns[fields:]]


def _iso(value: Any) -> Optional[str]:
    if value is None:
        return None
    # sqlite3 hands back SQLAlchemy's text; parse it as SQLAlchemy would, so the text is the same.
    return (value if isinstance(value, datetime) else datetime.fromisoformat(value)).isoformat()


# SQLAlchemy's SQLite text for a time; its isoformat() is the same text with a T, and
# without the microseconds when they are zero.
_SQLITE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}")


def _iso_all(values: Sequence[Any]) -> list[Optional[str]]:
    if set(map(type, values)) == {str} and all(map(_SQLITE_TIME.fullmatch, values)):
        return [f"{v[:10]}T{v[11:19]}" if v.endswith(".000000") else f"{v[:10]}T{v[11:]}" for v in values]
    return [_iso(v) for v in values]


# A list of strings as json.dumps writes it when they need no escapes: its items can be
# cut out of the text without a JSON parser.
_PLAIN_ITEM = r'"[^"\\\x00-\x1f]*"'
_PLAIN_LIST = re.compile(rf"\[\]|\[{_PLAIN_ITEM}(?:, {_PLAIN_ITEM})*\]")


def _spaced_links(values: Sequence[Optional[str]]) -> list[str]:
    """Each run's links (JSON text), joined by spaces."""
    texts = ["[]" if v is None else v for v in values]
    if all(map(_PLAIN_LIST.fullmatch, texts)):
        return [text[2:-2].replace('", "', " ") for text in texts]
    return [" ".join(json.loads(text) or []) for text in texts]


def _arg_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


# ------------------------------------------------------------------ writing cells and rows


class _Numbers(dict):
    """Each number's text, made once: the same scores and learning rates recur across runs."""

    def __init__(self, text: Any, none: str):
        super().__init__()
        self.text, self.none = text, none

    def __missing__(self, value: Any) -> str:
        if value is None:
            return self.none
        text = self.text(float(value))
        if len(self) >= 4096:
            self.clear()
        if value != 0:  # 0.0 and -0.0 are one key but two texts in CSV
            self[value] = text
        return text


def _csv_float(value: float) -> str:
    # numpy's str() of a float64, which pandas writes, is Python's repr; NaN is a gap.
    return "" if value != value else repr(value)


_CSV_BOOLS = {True: "True", False: "False", None: ""}
_JSON_BOOLS = {True: "true", False: "false", None: "null"}


class _CsvText:
    """The rows as pandas' `to_csv(index=False, lineterminator="\\n")` writes them."""

    between = ""
    end = ""

    def __init__(self, names: list[str]):
        self.begin = _csv_line(names)
        self.specials = _csv_specials()
        self.numbers = _Numbers(_csv_float, "")

    def cells(self, values: list[Any], as_float: bool) -> list[str]:
        """One column of a chunk as CSV fields; `as_float`: write its ints as floats."""
        kinds = set(map(type, values))
        if kinds == {_NONE}:
            return [""] * len(values)
        if kinds <= {str, _NONE}:
            return self.quoted(values if _NONE not in kinds else ["" if v is None else v for v in values])
        if kinds == {int} and not as_float:
            return list(map(str, values))
        if kinds <= {float, _NONE} or (as_float and kinds <= {int, float, _NONE}):
            return list(map(self.numbers.__getitem__, values))
        if kinds <= {bool, _NONE}:
            return list(map(_CSV_BOOLS.__getitem__, values))
        return self.quoted([self.value(v, as_float) for v in values])

    def value(self, value: Any, as_float: bool) -> str:
        if value is None or type(value) is str:
            return value or ""
        if type(value) is bool:
            return _CSV_BOOLS[value]
        if type(value) is float or (as_float and type(value) is int):
            return self.numbers[value]
        if isinstance(value, (list, dict)):
            return json.dumps(value)
        return str(value)

    def quoted(self, texts: list[str]) -> list[str]:
        return texts if self.specials is None else _quoted(texts, self.specials)

    def rows(self, columns: list[list[str]]) -> str:
        if self.specials is None:  # the csv module quotes some other way than expected: let it
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\n").writerows(zip(*columns))
            return buffer.getvalue()
        return "\n".join(map(",".join, zip(*columns))) + "\n"


def _csv_line(fields: list[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    return buffer.getvalue()


@lru_cache(maxsize=1)
def _csv_specials() -> Optional[re.Pattern[str]]:
    """The characters that make the csv module, set up as pandas sets it up, quote a field.

    Asked of the running Python rather than assumed (versions differ on `\\r`). None if
    the module quotes some other way than expected; then it quotes every row itself.
    """
    if _csv_line(["", "x"]) != ",x\n" or _csv_line(['a"b', "x"]) != '"a""b",x\n':
        return None
    chars = [chr(code) for code in range(128) if _csv_line([chr(code), "x"]).startswith('"')]
    return re.compile("[" + re.escape("".join(chars)) + "]")


def _quoted(texts: list[str], specials: re.Pattern[str]) -> list[str]:
    search = specials.search
    # Most columns need no quotes at all; one search per few thousand values says so.
    if not any(search("".join(texts[i:i + 4096])) for i in range(0, len(texts), 4096)):
        return texts
    return ['"' + t.replace('"', '""') + '"' if search(t) else t for t in texts]


_POW10 = 10_000_000_000


def _json_float(value: float) -> str:
    """A float as pandas' JSON encoder writes it (ultrajson's modp_dtoa at its default
    double_precision of 10): fixed point rounded to 10 decimals, trailing zeros dropped,
    and %.10g beyond 1e16 and below 1e-15; NaN and the infinities as null. The same
    double arithmetic as its C, step by step."""
    if value != value or value in (float("inf"), float("-inf")):
        return "null"
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value > 1e16 - 1 or (value != 0.0 and value < 1e-15):
        return sign + "%.10g" % value
    whole = int(value)
    scaled = (value - whole) * _POW10
    frac = int(scaled)
    diff = scaled - frac
    if diff > 0.5 or (diff == 0.5 and (frac == 0 or frac & 1)):
        frac += 1
    if frac >= _POW10:
        frac, whole = 0, whole + 1
    return f"{sign}{whole}." + (f"{frac:010d}".rstrip("0") if frac else "0")


class _JsonText:
    """The rows as pandas' `to_json(orient="records", force_ascii=False, indent=2)` writes them."""

    begin = "[\n"
    between = ",\n"
    end = "\n]\n"

    def __init__(self, names: list[str]):
        keys = [json.encoder.encode_basestring(n) for n in names]
        # What comes before each value in a row's text, and after the last.
        self.before = ["  {\n    " + keys[0] + ":"] + [",\n    " + key + ":" for key in keys[1:]]
        self.numbers = _Numbers(_json_float, "null")

    def cells(self, values: list[Any], as_float: bool) -> list[str]:
        """One column of a chunk as JSON values; `as_float`: write its ints as floats."""
        kinds = set(map(type, values))
        if kinds == {_NONE}:
            return ["null"] * len(values)
        if kinds <= {str, _NONE}:
            quote = json.encoder.encode_basestring
            return list(map(quote, values)) if _NONE not in kinds else ["null" if v is None else quote(v) for v in values]
        if kinds == {int} and not as_float:
            return list(map(str, values))
        if kinds <= {float, _NONE} or (as_float and kinds <= {int, float, _NONE}):
            return list(map(self.numbers.__getitem__, values))
        if kinds <= {bool, _NONE}:
            return list(map(_JSON_BOOLS.__getitem__, values))
        return [self.value(v, as_float) for v in values]

    def value(self, value: Any, as_float: bool) -> str:
        if value is None or type(value) is bool:
            return _JSON_BOOLS[value]
        if type(value) is str:
            return json.encoder.encode_basestring(value)
        if type(value) is float or (as_float and type(value) is int):
            return self.numbers[value]
        if isinstance(value, (list, dict)):
            return json.encoder.encode_basestring(json.dumps(value))
        return str(value)

    def rows(self, columns: list[list[str]]) -> str:
        from itertools import repeat

        parts: list[Any] = []
        for before, cells in zip(self.before, columns):
            parts += [repeat(before), cells]
        parts.append(repeat("\n  }"))
        # ultrajson escapes every "/"; nothing else in the text has one.
        return ",\n".join(map("".join, zip(*parts))).replace("/", "\\/")
