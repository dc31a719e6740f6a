"""Reading runs without SQLAlchemy, and what both read paths share.

`ledger list` and `ledger show` are the commands users type most, and importing SQLAlchemy
costs more than their query. This module holds what the two read paths have in common:
the filter language with its type rules and errors, sort keys, name suggestions and the
JSON shape of a run. It also holds a reader on the standard library's sqlite3 for a SQLite
ledger whose schema is current. Any other ledger (PostgreSQL, or an old file that needs a
migration) is read through SQLAlchemy by `ledger.queries`, which renders the same
`Predicate`s and `SortKey`s as SQL expressions; only the SQL generation differs.
"""

from __future__ import annotations

import difflib
import heapq
import json
import operator
import re
import sqlite3
from collections import namedtuple
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from typing import Any, Iterable, Iterator, Optional, Sequence

from ledger.args import parse_value
from ledger.db import HEAD_REVISION, resolve_url, sqlite_path
from ledger.errors import LedgerError

# Fields a filter or sort can name directly; anything else is a parsed argument.
COLUMN_NAMES = (
    "name", "date", "model", "kind", "status", "lb_miou", "val_miou", "lb_val_miou", "args_status",
    "job_hash", "created_at", "position",
)
ALIASES = {"lb": "lb_miou", "val": "val_miou", "score": "lb_miou"}
NUMERIC = {"lb_miou", "val_miou", "lb_val_miou", "position"}
TIMES = {"created_at"}  # compared as date-times
# Columns that are not text: `~` (contains) reads them as text.
NOT_TEXT = NUMERIC | TIMES
OPERATORS = ("=", "!=", ">", ">=", "<", "<=", "~")

_WHERE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\s*(>=|<=|!=|==|=|>|<|~)\s*(.*?)\s*$")
_SORT_ARG = re.compile(r"(args\.)?[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Condition:
    key: str
    op: str
    value: Any

    @property
    def column(self) -> Optional[str]:
        key = ALIASES.get(self.key, self.key)
        return key if key in COLUMN_NAMES else None

    @property
    def arg_key(self) -> str:
        return self.key[len("args."):] if self.key.startswith("args.") else self.key


def parse_where(expr: str) -> Condition:
    """`lr=0.0001`, `lb_miou>0.6`, `criterion~focal` (contains), `args.seed!=42`."""
    match = _WHERE.match(expr)
    if not match:
        raise LedgerError(
            f"cannot read the filter {expr!r}: write KEY OP VALUE with OP one of {' '.join(OPERATORS)}"
            " (e.g. --where lr=0.0001 --where 'lb_miou>0.6')"
        )
    key, op, text = match.groups()
    op = "=" if op == "==" else op
    return Condition(key, op, text if op == "~" else parse_value(text))


@dataclass(frozen=True)
class Predicate:
    """A condition with the type rules applied; each read path renders it as SQL.

    Compares `column` (a runs column) or, when that is None, the parsed argument `arg_key`,
    read as `read_as`: "float", "boolean", "string", or None for a column as it is stored.
    `op` is one of OPERATORS; `~` looks for the text `value` (unescaped) anywhere, and a
    `value` of None means IS (NOT) NULL.
    """

    column: Optional[str]
    arg_key: Optional[str]
    read_as: Optional[str]
    op: str
    value: Any


def predicate(cond: Condition) -> Predicate:
    """The type rules: numbers compare as REAL, True/False as booleans, times as times, the rest as text."""
    column = cond.column
    value = cond.value
    if column is not None:
        if cond.op == "~":
            return Predicate(column, None, "string" if column in NOT_TEXT else None, "~", str(value))
        if column in NUMERIC:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise LedgerError(f"{cond.key} is a number; cannot compare it with {value!r}")
            return Predicate(column, None, None, cond.op, _as_float(cond.key, value))
        if value is None:
            if cond.op not in ("=", "!="):
                raise LedgerError(f"{cond.key}: None can only be compared with = or !=")
            return Predicate(column, None, None, cond.op, None)
        if column in TIMES:
            return Predicate(column, None, None, cond.op, _as_time(cond.key, value))
        return Predicate(column, None, None, cond.op, str(value))

    key = cond.arg_key
    if cond.op == "~":
        return Predicate(None, key, "string", "~", str(value))
    if isinstance(value, bool):
        if cond.op not in ("=", "!="):
            raise LedgerError(f"{cond.key}: True/False can only be compared with = or !=")
        return Predicate(None, key, "boolean", cond.op, value)
    if isinstance(value, (int, float)):
        return Predicate(None, key, "float", cond.op, _as_float(cond.key, value))
    if value is None:
        raise LedgerError(f"{cond.key}: comparing an argument with None is not supported; use ~ or a value")
    return Predicate(None, key, "string", cond.op, str(value))


def _as_time(key: str, value: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise LedgerError(f"{key} is a date and time (e.g. 2026-11-28 or '2026-11-28 12:30'); "
                          f"cannot compare it with {value!r}") from None


def _as_float(key: str, value: Any) -> float:
    try:
        return float(value)
    except OverflowError:
        raise LedgerError(f"{key}: {value} is too large to compare") from None


@dataclass(frozen=True)
class SortKey:
    """What `--sort` orders by: a runs column, or a parsed argument read as a number."""

    column: Optional[str]
    arg_key: Optional[str]
    descending: bool


def sort_key(key: str) -> SortKey:
    """`lb_miou` ascending, `-lb_miou` descending; parsed arguments sort numerically."""
    descending = key.startswith("-")
    name = key.lstrip("-+")
    name = ALIASES.get(name, name)
    if name in COLUMN_NAMES:
        return SortKey(name, None, descending)
    if _SORT_ARG.fullmatch(name):
        return SortKey(None, name.removeprefix("args."), descending)
    raise LedgerError(f"cannot sort by {key!r}; use a column ({', '.join(COLUMN_NAMES)}) or an argument name")


def check_limit(limit: Optional[int]) -> None:
    if limit is not None and limit < 0:
        raise LedgerError("--limit must be 0 or more")


# difflib compares the query with every name; on a big ledger only the names that share
# the most 3-letter pieces with it are worth comparing.
SUGGESTION_POOL = 200
_MAX_GRAMS = 100  # a pasted paragraph must not cost a pass per letter


def closest_names(name: str, names: Sequence[str], n: int = 3) -> list[str]:
    """Up to `n` names like `name`: difflib's closest, else those containing it (any case)."""
    lowered_names = [candidate.lower() for candidate in names]
    pool: Sequence[str] = names
    if len(names) > SUGGESTION_POOL:
        lowered = name.lower()
        grams = list(dict.fromkeys(lowered[i:i + 3] for i in range(len(lowered) - 2)))[:_MAX_GRAMS] or [lowered]
        # One C-speed pass per piece: 1 where a name contains it; then the count per name.
        hits = [bytes(map(operator.contains, lowered_names, repeat(gram))) for gram in grams]
        shared = list(map(sum, zip(*hits)))
        best = heapq.nlargest(SUGGESTION_POOL, range(len(names)), key=shared.__getitem__)
        pool = [names[i] for i in best]
    close = difflib.get_close_matches(name, pool, n=n, cutoff=0.5)
    if not close:
        lowered = name.lower()
        close = [candidate for candidate, low in zip(names, lowered_names) if lowered in low][:n]
    return close


def unknown_run(name: str, names: Sequence[str]) -> LedgerError:
    """The error for a run name the ledger does not have, naming the closest ones."""
    close = closest_names(name, names)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return LedgerError(f"no run named {name!r}{hint}")


def nest_children(runs: list[Any]) -> list[tuple[Any, int]]:
    """Runs with reproductions moved under their parent: (run, depth) in display order."""
    present = {run.id for run in runs}
    children: dict[int, list[Any]] = {}
    roots = []
    for run in runs:
        if run.parent_id is not None and run.parent_id in present:
            children.setdefault(run.parent_id, []).append(run)
        else:
            roots.append(run)
    out: list[tuple[Any, int]] = []

    def visit(run: Any, depth: int) -> None:
        out.append((run, depth))
        for child in children.get(run.id, []):
            visit(child, depth + 1)

    for run in roots:
        visit(run, 0)
    return out


def run_summary(run: Any) -> dict[str, Any]:
    """The fields `ledger list --json` prints for a run (an ORM `Run` or a record here)."""
    return {
        "name": run.name,
        "date": run.date,
        "model": run.model,
        "kind": run.kind,
        "parent": run.parent.name if run.parent is not None else None,
        "status": run.status,
        "lb_miou": run.lb_miou,
        "val_miou": run.val_miou,
        "lb_val_miou": run.lb_val_miou,
    }


def run_details(run: Any) -> dict[str, Any]:
    """Everything about a run, as `ledger show --json` prints it."""
    details = run_summary(run)
    details.update(
        arguments=run.args,
        arguments_raw=run.args_raw,
        args_status=run.args_status,
        args_error=run.args_error,
        links=list(run.links or []),
        notes=run.notes,
        children=[child.name for child in run.children],
        created_at=run.created_at.isoformat() if run.created_at else None,
        updated_at=run.updated_at.isoformat() if run.updated_at else None,
        source=run.source,
        source_row=run.source_row,
        extra_columns=_extra_columns(run),
        job=run.job,
        job_hash=run.job_hash,
        environment=run.environment,
        data_fingerprint=run.data_fingerprint,
        duration_s=run.duration_s,
        checkpoint_path=run.checkpoint_path,
        error=run.error,
        metrics=_metric_series(run),
    )
    return details


def _extra_columns(run: Any) -> dict[str, str]:
    from ledger.records import header_role

    return {h: v for h, v in (run.cells or {}).items() if header_role(h) is None}


def _metric_series(run: Any) -> dict[str, list[dict[str, Any]]]:
    series: dict[str, list[dict[str, Any]]] = {}
    for metric in run.metrics:
        series.setdefault(metric.name, []).append({"step": metric.step, "epoch": metric.epoch, "value": metric.value})
    return series


# Read-only records with the attribute names of the ORM classes, so that `run_summary`,
# `run_details`, `nest_children` and `ledger.views` take either.
Ref = namedtuple("Ref", "name")
MetricPoint = namedtuple("MetricPoint", "name step epoch value")

# The runs table at HEAD_REVISION (a test keeps this in step with ledger.models.Run).
RUN_COLUMNS = (
    "id", "position", "name", "date", "model", "args_raw", "args", "args_status", "args_error", "links", "notes",
    "lb_miou", "val_miou", "lb_val_miou", "kind", "parent_id", "status", "created_at", "updated_at", "source",
    "source_row", "cells", "row_line", "job", "job_hash", "environment", "data_fingerprint", "duration_s",
    "checkpoint_path", "error",
)
JSON_COLUMNS = frozenset({"args", "links", "cells", "job", "environment", "data_fingerprint"})
TIME_COLUMNS = frozenset({"created_at", "updated_at"})
RunRecord = namedtuple("RunRecord", RUN_COLUMNS + ("parent", "children", "metrics"))
RunRecord.__doc__ = "A run as `ledger show` reads it: every column, its parent and children (`Ref`s) and metrics."

SUMMARY_COLUMNS = ("id", "parent_id", "position", "name", "date", "model", "kind", "status", "lb_miou", "val_miou",
                   "lb_val_miou")
RunSummary = namedtuple("RunSummary", SUMMARY_COLUMNS + ("parent",))
RunSummary.__doc__ = "A run as `ledger list` reads it: the columns it shows and its parent."

# SQLAlchemy casts JSON values to FLOAT, BOOLEAN and VARCHAR; in SQLite those are the
# REAL, NUMERIC and TEXT affinities.
_CAST = {"float": "REAL", "boolean": "NUMERIC", "string": "TEXT"}
_FROM = "FROM runs AS r LEFT JOIN runs AS p ON p.id = r.parent_id"


def json_path(key: str) -> str:
    # Keys are identifiers (the filter grammar allows nothing else), so no quoting is needed.
    return f'$."{key}"'


def like_escape(text: str) -> str:
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


def _target_sql(column: Optional[str], arg_key: Optional[str], read_as: Optional[str]) -> tuple[str, list[Any]]:
    if column is not None:
        return (f"CAST(r.{column} AS {_CAST[read_as]})" if read_as else f"r.{column}"), []
    assert arg_key is not None and read_as is not None
    return f"CAST(json_extract(r.args, ?) AS {_CAST[read_as]})", [json_path(arg_key)]


def where_sql(pred: Predicate) -> tuple[str, list[Any]]:
    """The predicate as SQLite SQL with `?` placeholders, and its parameters."""
    expr, params = _target_sql(pred.column, pred.arg_key, pred.read_as)
    if pred.op == "~":
        return f"{expr} LIKE '%' || ? || '%' ESCAPE '/'", [*params, like_escape(pred.value)]
    if pred.value is None:
        return f"{expr} IS {'NOT ' if pred.op == '!=' else ''}NULL", params
    value = pred.value
    if pred.read_as == "boolean":
        value = int(value)
    elif isinstance(value, datetime):
        # SQLAlchemy's SQLite storage format, which compares as text.
        value = (f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
                 f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}")
    return f"{expr} {pred.op} ?", [*params, value]


def order_sql(key: SortKey) -> tuple[str, list[Any]]:
    expr, params = _target_sql(key.column, key.arg_key, None if key.column else "float")
    return f"{expr} {'DESC' if key.descending else 'ASC'} NULLS LAST", params


def _decode(column: str, value: Any) -> Any:
    # As SQLAlchemy's JSON and SQLite DateTime result processors do.
    if value is None:
        return None
    if column in JSON_COLUMNS:
        return json.loads(value)
    if column in TIME_COLUMNS:
        return datetime.fromisoformat(value)
    return value


class SqliteReader:
    """The read commands' queries on a sqlite3 connection to an up-to-date ledger."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def list_runs(self, *, where: Iterable[str] = (), sort: Optional[str] = None,
                  limit: Optional[int] = None) -> list[RunSummary]:
        """As `ledger.queries.list_runs`: all filters hold; without --sort the newest N, oldest first."""
        check_limit(limit)
        clauses, params = [], []
        for expr in where:
            sql, values = where_sql(predicate(parse_where(expr)))
            clauses.append(sql)
            params += values
        if sort:
            order, values = order_sql(sort_key(sort))
            order += ", r.position, r.id"
            params += values
        elif limit is not None:
            order = "r.position DESC, r.id DESC"
        else:
            order = "r.position, r.id"
        sql = f"SELECT {', '.join('r.' + c for c in SUMMARY_COLUMNS)}, p.name {_FROM}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += f" ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        runs = [RunSummary(*row[:-1], Ref(row[-1]) if row[-1] is not None else None)
                for row in self.conn.execute(sql, params)]
        if not sort and limit is not None:
            runs.reverse()
        return runs

    def get_run(self, name: str) -> RunRecord:
        """The run called `name`, with parent, children and metrics; a LedgerError if none."""
        row = self.conn.execute(
            f"SELECT {', '.join('r.' + c for c in RUN_COLUMNS)}, p.name {_FROM} WHERE r.name = ?", (name,)
        ).fetchone()
        if row is None:
            names = [n for (n,) in self.conn.execute("SELECT name FROM runs ORDER BY name")]
            raise unknown_run(name, names)
        fields = [_decode(column, value) for column, value in zip(RUN_COLUMNS, row)]
        run_id = row[0]
        children = tuple(Ref(n) for (n,) in self.conn.execute(
            "SELECT name FROM runs WHERE parent_id = ? ORDER BY id", (run_id,)))
        metrics = tuple(MetricPoint(*m) for m in self.conn.execute(
            "SELECT name, step, epoch, value FROM metrics WHERE run_id = ? ORDER BY id", (run_id,)))
        return RunRecord(*fields, Ref(row[-1]) if row[-1] is not None else None, children, metrics)

    def export_flat(self, fmt: str) -> str:
        from ledger.export import export_flat

        return export_flat(self.conn, fmt)


def connect(db: Optional[str] = None) -> Optional[sqlite3.Connection]:
    """A read-only sqlite3 connection when the ledger is a SQLite file at HEAD_REVISION, else None.

    None sends the caller to SQLAlchemy, which gives the same answers on any database,
    upgrades an old file, and reports a missing or unreadable one.
    """
    path = sqlite_path(resolve_url(db))
    if path is None or not path.is_file():
        return None
    try:
        # isolation_level=None: the explicit BEGIN below holds one snapshot for every query.
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5, isolation_level=None)
    except (sqlite3.Error, ValueError):
        return None
    try:
        conn.execute("BEGIN")
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        conn.close()
        return None
    if row is None or row[0] != HEAD_REVISION:
        conn.close()
        return None
    return conn


@contextmanager
def reading(db: Optional[str] = None) -> Iterator[Any]:
    """A reader for the read commands: `list_runs`, `get_run` and `export_flat`.

    stdlib sqlite3 on an up-to-date SQLite ledger, else a SQLAlchemy session in one
    transaction (`ledger.queries.SessionReader`). Records stay usable inside the block.
    """
    conn = connect(db)
    if conn is None:
        from ledger.db import open_ledger, transaction
        from ledger.queries import SessionReader

        with transaction(open_ledger(db)) as session:
            yield SessionReader(session)
        return
    try:
        yield SqliteReader(conn)
    finally:
        conn.close()
