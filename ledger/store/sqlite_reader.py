"""Reading a SQLite ledger on the standard library's sqlite3, without SQLAlchemy.

`ledger list` and `ledger show` are the commands users type most, and importing SQLAlchemy
costs more than their query. This reader answers them on a SQLite ledger whose schema is
current; any other ledger (PostgreSQL, or an old file that needs a migration) is read
through SQLAlchemy by `ledger.store.sql_reader`, which renders the same filters
(`ledger.core.filters`) as SQLAlchemy expressions.

The columns and how to decode each are read from the file's own schema (`PRAGMA
table_info`), which the migrations wrote from `ledger.store.models`: a column added there
comes back here, decoded by its declared type, without a list to keep in step.
"""

from __future__ import annotations

import json
import sqlite3
from collections import namedtuple
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Optional

from ledger.core.config import resolve_url, sqlite_path, sqlite_read_uri
from ledger.core.filters import (
    SEARCH_COLUMNS,
    SEARCH_INDEX,
    SEARCH_MIN_INDEXED,
    Predicate,
    SortKey,
    check_limit,
    checked_condition,
    checked_sort,
    fts_phrase,
    parse_where,
    predicate,
    search_text,
    sort_key,
    unknown_run,
)
from ledger.store.db import HEAD_REVISION
from ledger.store.indexed import (
    ARGS_TABLE,
    KEY_MAX,
    NAMES_INDEX,
    IndexedNames,
    column_indexed,
    driver,
    selective,
    side_column,
    sqlite_side_sql,
)

# Read-only records with the attribute names of the ORM classes, so that `ledger.store.shapes`
# and the terminal views take either.
Ref = namedtuple("Ref", "name")
MetricPoint = namedtuple("MetricPoint", "name step epoch value")
TagName = namedtuple("TagName", "tag")

# The columns `ledger list` shows and nests by; each is a column of the runs table.
SUMMARY_COLUMNS = ("id", "parent_id", "position", "name", "date", "model", "kind", "status", "lb_miou", "val_miou",
                   "lb_val_miou", "host", "pid", "heartbeat_at", "args", "notes", "links", "section", "scores")
RunSummary = namedtuple("RunSummary", SUMMARY_COLUMNS + ("parent",))
RunSummary.__doc__ = "A run as `ledger list` reads it: the columns it shows and its parent."

# How SQLAlchemy's result processors turn SQLite's stored text into Python values, by the
# type name SQLAlchemy declares a column with; other types come back as stored.
DECODERS: dict[str, Callable[[Any], Any]] = {
    "JSON": json.loads,
    "DATETIME": datetime.fromisoformat,
    "BOOLEAN": bool,
}

# SQLAlchemy casts JSON values to FLOAT, BOOLEAN and VARCHAR; in SQLite those are the
# REAL, NUMERIC and TEXT affinities.
_CAST = {"float": "REAL", "boolean": "NUMERIC", "string": "TEXT"}
_FROM = "FROM runs AS r LEFT JOIN runs AS p ON p.id = r.parent_id"


class Schema:
    """A table's columns as the file declares them, and the decoder of each (None: as stored)."""

    def __init__(self, declared: list[tuple[str, str]]):
        self.columns = tuple(name for name, _ in declared)
        self.types = dict(declared)

    @classmethod
    def of(cls, conn: sqlite3.Connection, table: str) -> "Schema":
        return cls([(row[1], row[2]) for row in conn.execute(f"PRAGMA table_info({table})")])

    def decoder(self, column: str) -> Optional[Callable[[Any], Any]]:
        return DECODERS.get(self.types[column].upper())

    def decode(self, columns: Iterable[str], row: Iterable[Any]) -> list[Any]:
        return decode_row([self.decoder(c) for c in columns], row)


def decode_row(decoders: list[Optional[Callable[[Any], Any]]], row: Iterable[Any]) -> list[Any]:
    """The stored values of a row as Python values; `decoders` has one entry per column."""
    return [value if value is None or decode is None else decode(value) for decode, value in zip(decoders, row)]


def json_path(key: str) -> str:
    # Keys are identifiers (the filter grammar allows nothing else), so no quoting is needed.
    return f'$."{key}"'


def like_escape(text: str) -> str:
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


def _target_sql(column: Optional[str], arg_key: Optional[str], read_as: Optional[str],
                field: str = "args") -> tuple[str, list[Any]]:
    if column is not None:
        return (f"CAST(r.{column} AS {_CAST[read_as]})" if read_as else f"r.{column}"), []
    assert arg_key is not None and read_as is not None and field in ("args", "scores")
    return f"CAST(json_extract(r.{field}, ?) AS {_CAST[read_as]})", [json_path(arg_key)]


def where_sql(pred: Predicate) -> tuple[str, list[Any]]:
    """The predicate as SQLite SQL with `?` placeholders, and its parameters."""
    if pred.read_as == "tag":
        test = "t.tag LIKE '%' || ? || '%' ESCAPE '/'" if pred.op == "~" else "t.tag = ?"
        value = like_escape(pred.value) if pred.op == "~" else pred.value
        exists = f"EXISTS (SELECT 1 FROM tags AS t WHERE t.run_id = r.id AND {test})"
        return ("NOT " + exists if pred.op == "!=" else exists), [value]
    expr, params = _target_sql(pred.column, pred.arg_key, pred.read_as, pred.field)
    if pred.op == "~":
        return f"{expr} LIKE '%' || ? || '%' ESCAPE '/'", [*params, like_escape(pred.value)]
    if pred.value is None:
        return f"{expr} IS {'NOT ' if pred.op == '!=' else ''}NULL", params
    value = pred.value
    if pred.read_as == "boolean":
        value = int(value)
    elif isinstance(value, datetime):
        value = sqlite_time(value)
    return f"{expr} {pred.op} ?", [*params, value]


def sqlite_time(value: datetime) -> str:
    """A time as SQLAlchemy stores it in SQLite (its DATETIME bind format), which compares as text."""
    return (f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
            f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}")


# The JSON types SQLite's json_type() names for each kind of value a filter compares, and
# every argument key of every run (both read paths use these on SQLite).
JSON_KINDS = {"number": ("integer", "real"), "boolean": ("true", "false"), "text": ("text",)}
# Every argument key, from the side table's index: one step per key, not a read of every run.
ARGUMENT_KEYS_SQL = (f"WITH RECURSIVE k(key) AS (SELECT min(key) FROM {ARGS_TABLE} UNION ALL"
                     f" SELECT (SELECT min(key) FROM {ARGS_TABLE} WHERE key > k.key) FROM k WHERE k.key IS NOT NULL)"
                     " SELECT key FROM k WHERE key IS NOT NULL")
# Whether a run has the argument, and (of the runs that have it) whether one holds it as `kinds`.
HAS_ARGUMENT_SQL = f"SELECT 1 FROM {ARGS_TABLE} WHERE key = ? LIMIT 1"
HAS_ARGUMENT_OF_SQL = (f"SELECT 1 FROM {ARGS_TABLE} AS a JOIN runs ON runs.id = a.run_id"
                       " WHERE a.key = ? AND json_type(runs.args, ?) IN ({kinds}) LIMIT 1")
SCORE_KEYS_SQL = ("SELECT DISTINCT j.key FROM runs, json_each(runs.scores) AS j"
                  " WHERE runs.scores IS NOT NULL AND json_type(runs.scores) = 'object'")


class ArgumentProbe:
    """`ledger.core.filters.KeyProbe` on a sqlite3 connection: which argument keys runs hold."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def has_argument(self, key: str, kinds: Optional[tuple[str, ...]] = None) -> bool:
        types = [t for kind in kinds or () for t in JSON_KINDS[kind]]
        if len(key) > KEY_MAX:  # not in the side table: read every run's JSON
            test = f"IN ({', '.join('?' * len(types))})" if types else "IS NOT NULL"
            sql = f"SELECT 1 FROM runs WHERE json_type(args, ?) {test} LIMIT 1"
            return self.conn.execute(sql, [json_path(key), *types]).fetchone() is not None
        if types:
            sql = HAS_ARGUMENT_OF_SQL.format(kinds=", ".join("?" * len(types)))
            return self.conn.execute(sql, [key, json_path(key), *types]).fetchone() is not None
        return self.conn.execute(HAS_ARGUMENT_SQL, [key]).fetchone() is not None

    def argument_keys(self) -> list[str]:
        return [k for (k,) in self.conn.execute(ARGUMENT_KEYS_SQL)]

    def has_score(self, key: str) -> bool:
        sql = "SELECT 1 FROM runs WHERE json_type(scores, ?) IS NOT NULL LIMIT 1"
        return self.conn.execute(sql, [json_path(key)]).fetchone() is not None

    def score_keys(self) -> list[str]:
        return [k for (k,) in self.conn.execute(SCORE_KEYS_SQL)]


def order_sql(key: SortKey) -> tuple[str, list[Any]]:
    expr, params = _target_sql(key.column, key.arg_key, None if key.column else "float", key.field)
    return f"{expr} {'DESC' if key.descending else 'ASC'} NULLS LAST", params


class SqliteReader:
    """The read commands' queries on a sqlite3 connection to an up-to-date ledger."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = self.source = conn  # `source`: what `ledger.store.export.export_flat` reads
        self.schema = Schema.of(conn, "runs")
        # A run as `ledger show` reads it: every column, its parent and children (`Ref`s), metrics, tags.
        self.record = namedtuple("RunRecord", self.schema.columns + ("parent", "children", "metrics", "tags"))

    def list_runs(self, *, where: Iterable[str] = (), sort: Optional[str] = None, limit: Optional[int] = None,
                  search: Optional[str] = None) -> list[RunSummary]:
        """As `ledger.store.sql_reader.list_runs`: all filters hold; without --sort the newest N, oldest first."""
        check_limit(limit)
        select, condition, order, params = self._listing(where, sort, limit, search)
        decoders = [self.schema.decoder(c) for c in SUMMARY_COLUMNS]
        if limit is None:
            rows = self.conn.execute(f"{select}{condition} ORDER BY {order}", params).fetchall()
        else:
            # The ids first, then only their rows: sorting carries ids, not whole rows.
            ids = [i for (i,) in self.conn.execute(
                f"SELECT r.id FROM runs AS r{condition} ORDER BY {order} LIMIT ?", [*params, limit])]
            found = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                found.update((row[0], row) for row in self.conn.execute(
                    f"{select} WHERE r.id IN ({', '.join('?' * len(chunk))})", chunk))
            rows = [found[i] for i in ids]
        runs = [RunSummary(*decode_row(decoders, row), Ref(row[-1]) if row[-1] is not None else None) for row in rows]
        if not sort and limit is not None:
            runs.reverse()
        return runs

    def iter_runs(self, *, where: Iterable[str] = (), sort: Optional[str] = None, search: Optional[str] = None,
                  batch: int = 1000) -> Iterator[list[RunSummary]]:
        """`list_runs` without a limit, a batch of runs at a time: memory that does not grow
        with the runs matched. The filters are checked before the first batch."""
        select, condition, order, params = self._listing(where, sort, None, search)
        decoders = [self.schema.decoder(c) for c in SUMMARY_COLUMNS]
        cursor = self.conn.execute(f"{select}{condition} ORDER BY {order}", params)

        def batches() -> Iterator[list[RunSummary]]:
            while rows := cursor.fetchmany(batch):
                yield [RunSummary(*decode_row(decoders, row), Ref(row[-1]) if row[-1] is not None else None)
                       for row in rows]

        return batches()

    def _listing(self, where: Iterable[str], sort: Optional[str], limit: Optional[int],
                 search: Optional[str]) -> tuple[str, str, str, list[Any]]:
        """The listing's SELECT, WHERE and ORDER BY, and their parameters."""
        probe = ArgumentProbe(self.conn)
        clauses, params = [], []
        text = search_text(search)
        if text is not None:
            sql, values = self._search_sql(text)
            clauses.append(sql)
            params += values
        filters, driven = self._filters([predicate(checked_condition(parse_where(e), probe)) for e in where], limit)
        for sql, values in filters:
            clauses.append(sql)
            params += values
        if sort:
            order, values = order_sql(sort_key(checked_sort(sort, probe)))
            order = [order, "r.position", "r.id"]
            params += values
        elif limit is not None:
            order = ["r.position DESC", "r.id DESC"]
        else:
            order = ["r.position", "r.id"]
        if driven:  # the filter's index gives the runs; sorting the few it gives beats an ordered scan
            order = ["+" + term for term in order]
        condition = " WHERE " + " AND ".join(clauses) if clauses else ""
        select = f"SELECT {', '.join('r.' + c for c in SUMMARY_COLUMNS)}, p.name {_FROM}"
        return select, condition, ", ".join(order), params

    def _filters(self, preds: list[Predicate], limit: Optional[int]) -> tuple[list[tuple[str, list[Any]]], bool]:
        """Each filter as SQL, and whether one is read through its index: the most selective
        (`ledger.store.indexed`), if any; the others are tested on each run, their index out
        of the planner's reach."""
        counts = [self._matches(pred, selective(limit)) for pred in preds]
        first = driver(counts, limit)
        out = []
        for i, pred in enumerate(preds):
            if i == first and pred.column is None:
                sql, values = sqlite_side_sql(pred)
                out.append((f"r.id IN ({sql})", values))
                continue
            sql, values = where_sql(pred)
            if i != first and column_indexed(pred):
                sql = "+" + sql  # unary plus: the same test, no index
            out.append((sql, values))
        return out, first is not None

    def _matches(self, pred: Predicate, cap: int) -> Optional[int]:
        """How many runs `pred` holds for, counted in its index up to `cap`; None without one."""
        if column_indexed(pred):
            sql, values = where_sql(pred)
            sql = f"SELECT 1 FROM runs AS r WHERE {sql}"
        elif side_column(pred, "sqlite") is not None:
            sql, values = sqlite_side_sql(pred)
        else:
            return None
        return self.conn.execute(f"SELECT count(*) FROM ({sql} LIMIT {int(cap)})", values).fetchone()[0]

    def last_metrics(self, run_ids: list[int]) -> dict[int, dict[str, float]]:
        """The last value of each metric series of these runs."""
        out: dict[int, dict[str, float]] = {}
        for start in range(0, len(run_ids), 500):
            chunk = run_ids[start:start + 500]
            rows = self.conn.execute(
                f"SELECT run_id, name, value FROM metrics WHERE run_id IN ({', '.join('?' * len(chunk))})"
                " ORDER BY run_id, name, step", chunk)
            for run_id, name, value in rows:
                out.setdefault(run_id, {})[name] = value
        return out

    def _search_sql(self, text: str) -> tuple[str, list[Any]]:
        indexed = self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (SEARCH_INDEX,)).fetchone()
        if indexed and len(text) >= SEARCH_MIN_INDEXED:
            return f"r.id IN (SELECT rowid FROM {SEARCH_INDEX} WHERE {SEARCH_INDEX} MATCH ?)", [fts_phrase(text)]
        likes = " OR ".join(f"r.{c} LIKE '%' || ? || '%' ESCAPE '/'" for c in SEARCH_COLUMNS)
        return f"({likes})", [like_escape(text)] * len(SEARCH_COLUMNS)

    def get_run(self, name: str) -> Any:
        """The run called `name`, with parent, children and metrics; a LedgerError if none."""
        columns = self.schema.columns
        row = self.conn.execute(
            f"SELECT {', '.join('r.' + c for c in columns)}, p.name {_FROM} WHERE r.name = ?", (name,)
        ).fetchone()
        if row is None:
            trigram = self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (NAMES_INDEX,)).fetchone()
            raise unknown_run(name, IndexedNames(self.conn.execute, trigram is not None))
        fields = self.schema.decode(columns, row)
        run_id = fields[columns.index("id")]
        children = tuple(Ref(n) for (n,) in self.conn.execute(
            "SELECT name FROM runs WHERE parent_id = ? ORDER BY id", (run_id,)))
        metrics = tuple(MetricPoint(*m) for m in self.conn.execute(
            "SELECT name, step, epoch, value FROM metrics WHERE run_id = ? ORDER BY id", (run_id,)))
        tags = tuple(TagName(t) for (t,) in self.conn.execute(
            "SELECT tag FROM tags WHERE run_id = ? ORDER BY tag", (run_id,)))
        return self.record(*fields, Ref(row[-1]) if row[-1] is not None else None, children, metrics, tags)

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
        conn = sqlite3.connect(sqlite_read_uri(path), uri=True, timeout=5, isolation_level=None)
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
