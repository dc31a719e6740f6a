"""Reading through the indexes of migration 0005: which index answers a filter, and run
names for suggestions. Both read paths use this (no SQLAlchemy here).

Every column a filter names has an index, and the parsed arguments have the side table
`run_args` (migration 0005: one row per run and key, its value read as a number in `num`
and as text in `text`, both indexed with the key). An index is the quick way to the few
runs a rare value matches; for a common value it is the slow way, since `--limit 20`
then sorts thousands of matches to keep twenty, where reading the runs in the order asked
for (by position or by the sort column, itself indexed) meets twenty matches at once.
SQLite's planner cannot tell the two apart without statistics, which a growing ledger
would make stale, so the readers ask: each indexable filter counts its matches in its
index, up to `SELECTIVE`; the filter with the fewest, if under that, is read through its
index and every other filter is tested row by row.

The side table gives what the JSON gives (see the migration), so a filter's answer does
not depend on the plan, only its speed; the one difference is on PostgreSQL, where a value
its cast to a number refuses (the old filter's error) is no number through the table.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Sequence

from ledger.core.filters import SEARCH_INDEX, Predicate, fts_phrase

# Matches at or above which a filter is read row by row, not through its index.
SELECTIVE = 10000
# Keys longer than this have no rows in run_args (a btree entry has a size limit on
# PostgreSQL); filters on them read the JSON. Migration 0005 writes the same number.
KEY_MAX = 200
# PostgreSQL's index on run_args holds the first this many characters of `text`.
PG_TEXT_PREFIX = 200
ARGS_TABLE = "run_args"
# Operators an index can answer; != and ~ (contains) are tested row by row.
INDEXED_OPS = ("=", "<", "<=", ">", ">=")


def side_column(pred: Predicate, dialect: str) -> Optional[str]:
    """The run_args column ("num" or "text") that answers an argument filter, or None
    where only the JSON can: a column, `!=` or `~`, None, a long key, or scores.

    A boolean compares 1 or 0 with the value read as a number; on SQLite that is `num`
    (CAST AS NUMERIC and AS REAL agree on 0 and 1); PostgreSQL casts text to boolean by
    rules of its own, so there booleans read the JSON.
    """
    if pred.column is not None or pred.arg_key is None or pred.op not in INDEXED_OPS or pred.value is None:
        return None
    if getattr(pred, "field", "args") != "args" or len(pred.arg_key) > KEY_MAX:
        return None
    if pred.read_as == "float":
        return "num"
    if pred.read_as == "string":
        return "text"
    if pred.read_as == "boolean" and dialect == "sqlite":
        return "num"
    return None


def column_indexed(pred: Predicate) -> bool:
    """Whether a column filter can be answered by the column's index (`=`, `<` ... on the
    column as stored, or `= None`)."""
    if pred.column is None or pred.read_as is not None:
        return False
    return pred.op in INDEXED_OPS if pred.value is not None else pred.op == "="


def side_value(pred: Predicate) -> Any:
    """The value a run_args column is compared with."""
    if pred.read_as == "boolean":
        return float(pred.value)
    return pred.value


def sqlite_side_sql(pred: Predicate) -> tuple[str, list[Any]]:
    """The runs that `pred` holds for, as a SELECT of run_id from run_args (SQLite)."""
    column = side_column(pred, "sqlite")
    assert column is not None
    return f"SELECT run_id FROM {ARGS_TABLE} WHERE key = ? AND {column} {pred.op} ?", [pred.arg_key, side_value(pred)]


def driver(counts: Sequence[Optional[int]]) -> Optional[int]:
    """Which filter to read through its index: the one with the fewest matches, if under
    SELECTIVE (counts are capped there; None: no index answers that filter)."""
    best = None
    for i, count in enumerate(counts):
        if count is not None and count < SELECTIVE and (best is None or count < counts[best]):
            best = i
    return best


# -- names, for suggestions (`ledger.core.filters.NameSource`) ---------------------------------

NEAR = 40  # names taken on each side of a name, in each order
PER_PIECE = 25  # names taken that hold each piece of it
_NEAR_SQL = (
    "SELECT name FROM runs WHERE name >= :name ORDER BY name LIMIT :k",
    "SELECT name FROM runs WHERE name < :name ORDER BY name DESC LIMIT :k",
    "SELECT name FROM runs WHERE lower(name) >= :lower ORDER BY lower(name) LIMIT :k",
    "SELECT name FROM runs WHERE lower(name) < :lower ORDER BY lower(name) DESC LIMIT :k",
)
_MATCHING = f"SELECT rowid FROM {SEARCH_INDEX} WHERE {SEARCH_INDEX} MATCH :phrase"
_CHUNK = 5000


class IndexedNames:
    """Run names through the name indexes (and on SQLite the trigram index of `--search`).

    `rows(sql, params)` runs SQL with `:name` parameters, which sqlite3 and SQLAlchemy's
    `text()` both take; `trigram`: whether the ledger has the FTS5 trigram index.
    """

    def __init__(self, rows: Callable[[str, dict[str, Any]], Iterable[Sequence[Any]]], trigram: bool):
        self.rows = rows
        self.trigram = trigram

    def _names(self, sql: str, **params: Any) -> list[str]:
        return [row[0] for row in self.rows(sql, params)]

    def first_names(self, n: int) -> list[str]:
        return self._names("SELECT name FROM runs ORDER BY name LIMIT :n", n=n)

    def names_near(self, name: str, pieces: Sequence[str]) -> list[str]:
        out = []
        for sql in _NEAR_SQL:
            out += self._names(sql, name=name, lower=name.lower(), k=NEAR)
        if self.trigram:
            for piece in pieces:
                out += self._names(f"SELECT name FROM runs WHERE id IN ({_MATCHING} LIMIT :k)",
                                   phrase=_name_phrase(piece), k=PER_PIECE)
        return out

    def names_containing(self, text: str, n: int) -> list[str]:
        lowered = text.lower()
        if self.trigram and len(text) >= 3:
            # Few holders: take them all from the trigram index; many: they come soon in name order.
            phrase = _name_phrase(text)
            count = self._names(f"SELECT count(*) FROM ({_MATCHING} LIMIT :cap)", phrase=phrase, cap=SELECTIVE)[0]
            if count < SELECTIVE:
                found = self._names(f"SELECT name FROM runs WHERE id IN ({_MATCHING})", phrase=phrase)
                return sorted(name for name in found if lowered in name.lower())[:n]
        out: list[str] = []
        after: Optional[str] = None
        while len(out) < n:
            chunk = (self._names("SELECT name FROM runs ORDER BY name LIMIT :k", k=_CHUNK) if after is None else
                     self._names("SELECT name FROM runs WHERE name > :after ORDER BY name LIMIT :k", after=after,
                                 k=_CHUNK))
            out += [name for name in chunk if lowered in name.lower()]
            if len(chunk) < _CHUNK:
                break
            after = chunk[-1]
        return out[:n]


def _name_phrase(text: str) -> str:
    return f"name : {fts_phrase(text)}"
