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
index, up to `selective(limit)`; the filter with the fewest, if under that, is read
through its index and every other filter is tested row by row.

The side table gives what the JSON gives (see the migration), so a filter's answer does
not depend on the plan, only its speed; the one difference is on PostgreSQL, where a value
its cast to a number refuses (the old filter's error) is no number through the table.
"""

from __future__ import annotations

from itertools import groupby
from operator import itemgetter
from typing import Any, Callable, Iterable, Optional, Sequence

from ledger.core.filters import Predicate, fts_phrase

# Matches at or above which a filter is read row by row, not through its index: without a
# limit SELECTIVE; with `--limit N` PER_LIMIT * N, for then reading the runs in order meets
# N matches within the first 1/PER_LIMIT of them, sooner than N of these matches are sorted.
SELECTIVE = 10000
PER_LIMIT = 100
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


def selective(limit: Optional[int]) -> int:
    """Matches under which a filter is worth reading through its index, for a listing of `limit` runs."""
    return SELECTIVE if limit is None else min(SELECTIVE, PER_LIMIT * max(limit, 1))


def driver(counts: Sequence[Optional[int]], limit: Optional[int]) -> Optional[int]:
    """Which filter to read through its index: the one with the fewest matches, if under
    `selective(limit)` (counts are capped there; None: no index answers that filter)."""
    cap = selective(limit)
    best = None
    for i, count in enumerate(counts):
        if count is not None and count < cap and (best is None or count < counts[best]):
            best = i
    return best


# -- names, for suggestions (`ledger.core.filters.NameSource`) ---------------------------------

NAMES_INDEX = "run_names"  # migration 0005: FTS5 trigrams of the names alone (SQLite)
NEAR = 20  # names taken on each side of a name, in each order
PREFIX_CUTS = 6  # without the trigram index: the names after each of its prefixes this much shorter
# A three-letter piece held by fewer names than RARE tells names apart; the names holding
# the most such pieces of a name are its candidates: whole ranks of them (all names holding
# as many), up to CANDIDATES, which `closest_names`' ranking then narrows.
RARE = 5000
CANDIDATES = 1000
MAX_GRAMS = 100  # a pasted paragraph must not cost a query per letter
_NEAR_SQL = (
    "SELECT name FROM runs WHERE name >= :name ORDER BY name LIMIT :k",
    "SELECT name FROM runs WHERE name < :name ORDER BY name DESC LIMIT :k",
    "SELECT name FROM runs WHERE lower(name) >= :lower ORDER BY lower(name) LIMIT :k",
    "SELECT name FROM runs WHERE lower(name) < :lower ORDER BY lower(name) DESC LIMIT :k",
)
_HOLDERS = f"SELECT rowid FROM {NAMES_INDEX} WHERE {NAMES_INDEX} MATCH :pieces"
_CHUNK = 5000


def trigrams(text: str) -> list[str]:
    """The distinct three-letter pieces of `text`, lowercased, in order (at most MAX_GRAMS)."""
    lowered = text.lower()
    return list(dict.fromkeys(lowered[i:i + 3] for i in range(len(lowered) - 2)))[:MAX_GRAMS]


class IndexedNames:
    """Run names through the name indexes: the name and lower(name) btrees, and on SQLite
    the trigram index `run_names`.

    `rows(sql, params)` runs SQL with `:name` parameters, which sqlite3 and SQLAlchemy's
    `text()` both take; `trigram`: whether the ledger has `run_names`.
    """

    def __init__(self, rows: Callable[[str, dict[str, Any]], Iterable[Sequence[Any]]], trigram: bool):
        self.rows = rows
        self.trigram = trigram

    def _column(self, sql: str, **params: Any) -> list[Any]:
        return [row[0] for row in self.rows(sql, params)]

    def count_names(self, cap: int) -> int:
        return self._column("SELECT count(*) FROM (SELECT 1 FROM runs LIMIT :cap) AS counted", cap=cap)[0]

    def first_names(self, n: int) -> list[str]:
        return self._column("SELECT name FROM runs ORDER BY name LIMIT :n", n=n)

    def names_near(self, name: str) -> list[str]:
        out = []
        for sql in _NEAR_SQL:
            out += self._column(sql, name=name, lower=name.lower(), k=NEAR)
        if self.trigram:
            out += self._sharing_rare_pieces(name)
        else:  # no trigram index: at least the names that share all but its last letters
            for cut in range(1, min(PREFIX_CUTS, len(name) // 2) + 1):
                out += self._column(_NEAR_SQL[0], name=name[:-cut], k=NEAR)
        return out

    def _count(self, pieces: str, cap: int) -> int:
        return self._column(f"SELECT count(*) FROM ({_HOLDERS} LIMIT :cap) AS counted", pieces=pieces, cap=cap)[0]

    def _by_id(self, ids: list[int]) -> list[str]:
        out = []
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            params = {f"i{k}": i for k, i in enumerate(chunk)}
            out += self._column(f"SELECT name FROM runs WHERE id IN ({', '.join(':' + k for k in params)})", **params)
        return out

    def _sharing_rare_pieces(self, name: str) -> list[str]:
        """The names that share the most of `name`'s rare trigrams: the ranking `closest_names`
        makes of every name, with the common pieces (which most names share) left out until
        it ranks these."""
        from collections import Counter

        votes: Counter[int] = Counter()
        for gram in trigrams(name):
            piece = fts_phrase(gram)
            if self._count(piece, RARE) < RARE:
                votes.update(self._column(_HOLDERS, pieces=piece))
        ids: list[int] = []
        for _, rank in groupby(votes.most_common(), key=itemgetter(1)):
            members = [i for i, _ in rank]
            if ids and len(ids) + len(members) > CANDIDATES:
                break
            ids += members[:CANDIDATES]
        return self._by_id(ids)

    def names_containing(self, text: str, n: int) -> list[str]:
        lowered = text.lower()
        grams = trigrams(text)
        if self.trigram and len(text) >= 3 and len(grams) < MAX_GRAMS:
            # Few names hold every piece: take them all and look; many: they come soon in name order.
            pieces = " AND ".join(fts_phrase(gram) for gram in grams)
            if self._count(pieces, SELECTIVE) < SELECTIVE:
                found = self._by_id(self._column(_HOLDERS, pieces=pieces))
                return sorted(name for name in found if lowered in name.lower())[:n]
        out: list[str] = []
        after: Optional[str] = None
        while len(out) < n:
            chunk = (self._column("SELECT name FROM runs ORDER BY name LIMIT :k", k=_CHUNK) if after is None else
                     self._column("SELECT name FROM runs WHERE name > :after ORDER BY name LIMIT :k", after=after,
                                  k=_CHUNK))
            out += [name for name in chunk if lowered in name.lower()]
            if len(chunk) < _CHUNK:
                break
            after = chunk[-1]
        return out[:n]
