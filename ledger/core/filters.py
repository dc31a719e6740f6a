"""The filter language of `--where` and `--sort`, and suggestions for a name that is not there.

Both read paths (`ledger.store.sqlite_reader` on the standard library, and
`ledger.store.sql_reader` through SQLAlchemy) apply these type rules and errors, then
render the same `Predicate`s and `SortKey`s as SQL; only the SQL generation differs.
"""

from __future__ import annotations

import heapq
import operator
import re
from datetime import datetime
from itertools import repeat
from typing import Any, NamedTuple, Optional, Protocol, Sequence

from ledger.core.errors import LedgerError

# Fields a filter or sort can name directly; anything else is a parsed argument.
COLUMN_NAMES = (
    "name", "date", "model", "kind", "status", "lb_miou", "val_miou", "lb_val_miou", "args_status",
    "job_hash", "created_at", "position", "section",
)
# `date` compares as a date (the column `date_iso`, which import reads from the cell as
# written); `date~05` looks in the cell's text.
DATES = {"date": "date_iso"}
# A log's score columns are metrics in the JSON column `scores`: `--where miou_latest>0.37`,
# or `scores.miou_latest` where an argument has the same name.
SCORES_PREFIX = "scores."
ALIASES = {"lb": "lb_miou", "val": "val_miou", "score": "lb_miou"}
# The columns' types, as ledger.store.models declares them (a test keeps the two in step;
# this layer does not import SQLAlchemy).
NUMERIC = {"lb_miou", "val_miou", "lb_val_miou", "position"}
TIMES = {"created_at"}  # compared as date-times
# Columns that are not text: `~` (contains) reads them as text.
NOT_TEXT = NUMERIC | TIMES
OPERATORS = ("=", "!=", ">", ">=", "<", "<=", "~")
TAG_KEYS = ("tag", "tags")

_WHERE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\s*(>=|<=|!=|==|=|>|<|~)\s*(.*?)\s*$")
_SORT_ARG = re.compile(r"(args\.|scores\.)?[A-Za-z_][A-Za-z0-9_]*")


# Immutable records as NamedTuples: a frozen dataclass costs ~0.8 ms to define, on every call.
class Condition(NamedTuple):
    key: str
    op: str
    value: Any

    @property
    def column(self) -> Optional[str]:
        key = ALIASES.get(self.key, self.key)
        return key if key in COLUMN_NAMES else None

    @property
    def arg_key(self) -> str:
        return self.key.split(".", 1)[1] if self.key.startswith(("args.", SCORES_PREFIX)) else self.key

    @property
    def field(self) -> str:
        """The JSON column a key that is not a column names: "args" or "scores"."""
        return "scores" if self.key.startswith(SCORES_PREFIX) else "args"


def parse_where(expr: str) -> Condition:
    """`lr=0.0001`, `lb_miou>0.6`, `criterion~focal` (contains), `args.seed!=42`."""
    match = _WHERE.match(expr)
    if not match:
        raise LedgerError(
            f"cannot read the filter {expr!r}: write KEY OP VALUE with OP one of {' '.join(OPERATORS)}"
            " (e.g. --where lr=0.0001 --where 'lb_miou>0.6')"
        )
    from ledger.core.args import parse_value  # the argument reader loads only when a filter is given

    key, op, text = match.groups()
    op = "=" if op == "==" else op
    return Condition(key, op, text if op == "~" else parse_value(text))


class Predicate(NamedTuple):
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
    field: str = "args"  # the JSON column holding `arg_key`: "args", or "scores" for a log's score columns


def predicate(cond: Condition) -> Predicate:
    """The type rules: numbers compare as REAL, True/False as booleans, times as times, the rest as text.

    `tag` (or `tags`) asks for a run's tags: `tag=best-lb` has it, `tag!=best-lb` has it not,
    `tag~best` has one containing the text; it is `read_as` "tag".
    """
    column = cond.column
    value = cond.value
    if cond.key in TAG_KEYS:
        if cond.op not in ("=", "!=", "~"):
            raise LedgerError(f"{cond.key}: a tag can only be compared with =, != or ~")
        return Predicate(None, None, "tag", cond.op, str(value))
    if column in DATES and cond.op != "~" and value is not None:
        return Predicate(DATES[column], None, None, cond.op, _as_date(cond.key, value))
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

    key, field = cond.arg_key, cond.field
    if field == "scores":
        if value is None and cond.op in ("=", "!="):
            return Predicate(None, key, "float", cond.op, None, field)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise LedgerError(f"{cond.key} is a score; compare it with a number (or None for a cell with none)")
        return Predicate(None, key, "float", cond.op, _as_float(cond.key, value), field)
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


def _as_date(key: str, value: Any) -> str:
    from ledger.core.cells import parse_date

    iso = parse_date(str(value))
    if iso is None:
        raise LedgerError(f"{key} is a date (e.g. 2021-05-03); cannot compare it with {value!r}")
    return iso


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


class SortKey(NamedTuple):
    """What `--sort` orders by: a runs column, or a parsed argument read as a number."""

    column: Optional[str]
    arg_key: Optional[str]
    descending: bool
    field: str = "args"  # as in Predicate


def sort_key(key: str) -> SortKey:
    """`lb_miou` ascending, `-lb_miou` descending; parsed arguments sort numerically."""
    descending = key.startswith("-")
    name = key.lstrip("-+")
    name = ALIASES.get(name, name)
    if name in COLUMN_NAMES:
        return SortKey(DATES.get(name, name), None, descending)
    if _SORT_ARG.fullmatch(name):
        if name.startswith(SCORES_PREFIX):
            return SortKey(None, name.removeprefix(SCORES_PREFIX), descending, "scores")
        return SortKey(None, name.removeprefix("args."), descending)
    raise LedgerError(f"cannot sort by {key!r}; use a column ({', '.join(COLUMN_NAMES)}) or an argument name")


class KeyProbe(Protocol):
    """What a read path answers about the arguments the runs hold, for the checks below."""

    def has_argument(self, key: str, kinds: Optional[tuple[str, ...]] = None) -> bool:
        """Whether any run records the argument `key` (with a value of one of `kinds`:
        "number", "boolean", "text"; None: any value)."""

    def argument_keys(self) -> list[str]:
        """Every argument key any run records."""

    def has_score(self, key: str) -> bool:
        """Whether any run has the score `key` (a metric of its log's score columns)."""

    def score_keys(self) -> list[str]:
        """Every score metric any run has."""


_KIND_OF = {bool: "boolean", int: "number", float: "number", str: "text"}


def checked_condition(cond: Condition, probe: KeyProbe) -> Condition:
    """`cond` with its key as the ledger spells it, or a LedgerError: a key no run has (with
    the closest known keys), or a value no run's argument can compare with."""
    if cond.key in TAG_KEYS or cond.column is not None:
        return cond
    key = _known_key(cond.key, probe)
    cond = Condition(key, cond.op, cond.value)
    if cond.column is not None or cond.op == "~" or cond.value is None or cond.field == "scores":
        return cond
    kind = _KIND_OF.get(type(cond.value))
    if kind is not None and not probe.has_argument(cond.arg_key, (kind,)):
        held = [k for k in ("number", "boolean", "text") if probe.has_argument(cond.arg_key, (k,))]
        what = " or ".join(held) or "lists or dicts"
        hint = f"; quote a text value, e.g. {cond.key}='{cond.value}'" if kind != "text" and "text" in held else ""
        raise LedgerError(f"{cond.key} holds {what} values; cannot compare it with {cond.value!r}{hint}")
    return cond


def checked_sort(key: str, probe: KeyProbe) -> str:
    """The `--sort` key as the ledger spells it, or a LedgerError naming the closest keys."""
    sign = key[: len(key) - len(key.lstrip("-+"))]
    name = key[len(sign):]
    if ALIASES.get(name, name) in COLUMN_NAMES:
        return key
    sort_key(key)  # the grammar first
    return sign + _known_key(name, probe)


def _known_key(key: str, probe: KeyProbe) -> str:
    """The key as the ledger spells it: an argument, else a score (`scores.` + metric)."""
    if key.startswith(SCORES_PREFIX):
        metric = key[len(SCORES_PREFIX):]
        if probe.has_score(metric):
            return key
        arg = metric
    else:
        arg = key[len("args."):] if key.startswith("args.") else key
        if probe.has_argument(arg):
            return key
        if not key.startswith("args.") and probe.has_score(arg):
            return SCORES_PREFIX + arg
    keys = probe.argument_keys()
    scores = probe.score_keys()
    columns = [*COLUMN_NAMES, *ALIASES, *TAG_KEYS]
    same = [k for k in dict.fromkeys([*columns, *keys]) if k.lower() == key.lower() or k.lower() == arg.lower()]
    same += [SCORES_PREFIX + k for k in scores if k.lower() == arg.lower() and k not in keys]
    if len(same) == 1:
        return same[0]
    close = closest_names(arg, [*columns, *keys, *scores])
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise LedgerError(f"no run has the key {key!r}: it is neither a column, a recorded argument nor a score{hint}")


# Columns `--search` looks in; shorter texts than the trigram index can find are looked up with LIKE.
SEARCH_COLUMNS = ("name", "notes", "args_raw")
SEARCH_INDEX = "runs_search"
SEARCH_MIN_INDEXED = 3


def search_text(text: Optional[str]) -> Optional[str]:
    """The text of `--search`, checked: None for no search."""
    if text is None:
        return None
    if not text.strip():
        raise LedgerError("--search needs some text to look for")
    return text.strip()


def fts_phrase(text: str) -> str:
    """`text` as one FTS5 phrase: with the trigram tokenizer, a case-insensitive substring."""
    return '"' + text.replace('"', '""') + '"'


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
    import difflib  # only an unknown name needs it

    close = difflib.get_close_matches(name, _sharing_most(name, names, lowered_names), n=n, cutoff=0.5)
    if not close:
        lowered = name.lower()
        close = [candidate for candidate, low in zip(names, lowered_names) if lowered in low][:n]
    return close


def _sharing_most(name: str, names: Sequence[str], lowered_names: Sequence[str]) -> Sequence[str]:
    """The SUGGESTION_POOL names that share the most 3-letter pieces with `name` (all if fewer)."""
    if len(names) <= SUGGESTION_POOL:
        return names
    lowered = name.lower()
    grams = list(dict.fromkeys(lowered[i:i + 3] for i in range(len(lowered) - 2)))[:_MAX_GRAMS] or [lowered]
    # One C-speed pass per piece: 1 where a name contains it; then the count per name.
    hits = [bytes(map(operator.contains, lowered_names, repeat(gram))) for gram in grams]
    shared = list(map(sum, zip(*hits)))
    best = heapq.nlargest(SUGGESTION_POOL, range(len(names)), key=shared.__getitem__)
    return [names[i] for i in best]


class NameSource(Protocol):
    """What a read path answers about the run names, for suggestions, through indexes."""

    def count_names(self, cap: int) -> int:
        """How many runs there are, counted up to `cap`."""

    def first_names(self, n: int) -> list[str]:
        """The first `n` names in name order (every name where there are fewer)."""

    def names_near(self, name: str) -> list[str]:
        """A bounded number of candidates for `name`: the names around it in name order and
        in lowercase order, and those sharing the most of its rarer three-letter pieces."""

    def names_containing(self, text: str, n: int) -> list[str]:
        """The first `n` names, in name order, that contain `text` in any case."""


# Up to this many runs every name is compared, as `closest_names` does; past it the
# candidates come from the indexes.
SUGGEST_FROM_ALL = 5000


def suggest_run_names(name: str, source: NameSource, n: int = 3) -> list[str]:
    """Up to `n` names like `name`, as `closest_names` finds them among every name; on a big
    ledger among the candidates the indexes give."""
    if source.count_names(SUGGEST_FROM_ALL + 1) <= SUGGEST_FROM_ALL:
        return closest_names(name, source.first_names(SUGGEST_FROM_ALL), n)
    pool = list(dict.fromkeys(source.names_near(name)))
    pool = _sharing_most(name, pool, [candidate.lower() for candidate in pool])
    import difflib

    return difflib.get_close_matches(name, pool, n=n, cutoff=0.5) or source.names_containing(name, n)


def unknown_run(name: str, names: NameSource) -> LedgerError:
    """The error for a run name the ledger does not have, naming the closest ones."""
    close = suggest_run_names(name, names)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return LedgerError(f"no run named {name!r}{hint}")

