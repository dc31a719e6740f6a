"""Reading runs through SQLAlchemy: filters compiled to bound SQL, sorting, lookup by name.

The filter language, its type rules and errors live in `ledger.core.filters`, shared with
the stdlib sqlite3 read path (`ledger.store.sqlite_reader`); here they become SQLAlchemy
expressions, so the same commands work on PostgreSQL and on files that need a migration.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Optional

from sqlalchemy import ColumnElement, Select, String, cast, func, literal, select, text
from sqlalchemy import column as text_column
from sqlalchemy import table as text_table
from sqlalchemy.orm import Session, selectinload

from ledger.core.filters import (
    COLUMN_NAMES,
    DATES,
    SEARCH_COLUMNS,
    SEARCH_INDEX,
    SEARCH_MIN_INDEXED,
    Condition,
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
from ledger.store.indexed import (
    ARGS_TABLE,
    KEY_MAX,
    NAMES_INDEX,
    PG_TEXT_PREFIX,
    IndexedNames,
    driver,
    selective,
    side_column,
    side_value,
)
from ledger.store.models import Metric, Run, Tag
from ledger.store.sqlite_reader import ARGUMENT_KEYS_SQL, JSON_KINDS, SCORE_KEYS_SQL, json_path

COLUMNS: dict[str, Any] = {name: getattr(Run, name) for name in (*COLUMN_NAMES, *DATES.values())}


def _compare(expr: Any, op: str, value: Any) -> ColumnElement[bool]:
    if op == "=":
        return expr == value
    if op == "!=":
        return expr != value
    if op == ">":
        return expr > value
    if op == ">=":
        return expr >= value
    if op == "<":
        return expr < value
    if op == "<=":
        return expr <= value
    raise AssertionError(op)


def _target(column: Optional[str], arg_key: Optional[str], read_as: Optional[str], field: str = "args") -> Any:
    if column is not None:
        return cast(COLUMNS[column], String) if read_as == "string" else COLUMNS[column]
    element = (Run.scores if field == "scores" else Run.args)[arg_key]
    if read_as == "boolean":
        return element.as_boolean()
    if read_as == "string":
        return element.as_string()
    return element.as_float()


def render_predicate(pred: Predicate) -> ColumnElement[bool]:
    """The predicate as a SQL expression; the key and the value travel as bound parameters."""
    if pred.read_as == "tag":
        test = Tag.tag.contains(pred.value, autoescape=True) if pred.op == "~" else Tag.tag == pred.value
        has = Run.tags.any(test)
        return ~has if pred.op == "!=" else has
    expr = _target(pred.column, pred.arg_key, pred.read_as, pred.field)
    if pred.op == "~":
        return expr.contains(pred.value, autoescape=True)
    if pred.value is None:
        return expr.is_(None) if pred.op == "=" else expr.is_not(None)
    return _compare(expr, pred.op, pred.value)


def compile_condition(cond: Condition) -> ColumnElement[bool]:
    return render_predicate(predicate(cond))


def sort_expression(key: str) -> Any:
    """`lb_miou` ascending, `-lb_miou` descending; parsed arguments sort numerically."""
    parsed: SortKey = sort_key(key)
    expr = _target(parsed.column, parsed.arg_key, None if parsed.column else "float", parsed.field)
    expr = expr.desc() if parsed.descending else expr.asc()
    return expr.nulls_last()


# The side table of the parsed arguments (migration 0005; not an ORM table: triggers write it).
RUN_ARGS = text_table(ARGS_TABLE, text_column("run_id"), text_column("key"), text_column("num"), text_column("text"))


def side_test(pred: Predicate, dialect: str) -> list[ColumnElement[bool]]:
    """`pred` as a test of run_args rows (`ledger.store.indexed.side_column` says it has one)."""
    column = side_column(pred, dialect)
    assert column is not None
    value = side_value(pred)
    test = [RUN_ARGS.c.key == pred.arg_key]
    if dialect == "postgresql" and column == "text" and pred.op == "=":
        # What PostgreSQL's index holds: the first PG_TEXT_PREFIX characters.
        test.append(func.left(RUN_ARGS.c.text, PG_TEXT_PREFIX) == func.left(literal(value, String), PG_TEXT_PREFIX))
    test.append(_compare(RUN_ARGS.c[column], pred.op, value))
    return test


def side_matches(session: Session, pred: Predicate, cap: int) -> Optional[int]:
    """How many runs `pred` holds for, counted in run_args up to `cap`; None if it cannot tell."""
    dialect = session.get_bind().dialect.name
    if side_column(pred, dialect) is None:
        return None
    rows = select(literal(1)).select_from(RUN_ARGS).where(*side_test(pred, dialect)).limit(cap).subquery()
    return session.scalar(select(func.count()).select_from(rows))


def filter_clauses(session: Session, preds: list[Predicate], limit: Optional[int]) -> list[ColumnElement[bool]]:
    """Each filter as SQL; the most selective argument filter through run_args, the rest as
    the JSON reads (`ledger.store.indexed`: the same runs either way)."""
    first = driver([side_matches(session, pred, selective(limit)) for pred in preds], limit)
    dialect = session.get_bind().dialect.name
    return [Run.id.in_(select(RUN_ARGS.c.run_id).where(*side_test(pred, dialect))) if i == first
            else render_predicate(pred) for i, pred in enumerate(preds)]


class ArgumentProbe:
    """`ledger.core.filters.KeyProbe` through a session: which argument keys runs hold."""

    # The JSON types each database names for each kind of value a filter compares.
    KINDS = {"postgresql": {"number": ("number",), "boolean": ("boolean",), "text": ("string",)},
             "sqlite": JSON_KINDS}

    def __init__(self, session: Session):
        self.session = session
        self.dialect = session.get_bind().dialect.name

    def _type_of(self, key: str) -> Any:
        if self.dialect == "postgresql":
            return func.json_typeof(Run.args[key])
        return func.json_type(Run.args, json_path(key))

    def has_argument(self, key: str, kinds: Optional[tuple[str, ...]] = None) -> bool:
        kind = self._type_of(key)
        if kinds:
            names = self.KINDS.get(self.dialect, self.KINDS["sqlite"])
            test = kind.in_([t for k in kinds for t in names[k]])
        else:
            test = kind.is_not(None)
        query = select(literal(1)).select_from(Run)
        if len(key) <= KEY_MAX:  # only the runs that have the key (run_args), else every run
            if not kinds:
                query = select(literal(1)).select_from(RUN_ARGS).where(RUN_ARGS.c.key == key)
                return self.session.scalar(query.limit(1)) is not None
            query = query.join(RUN_ARGS, RUN_ARGS.c.run_id == Run.id).where(RUN_ARGS.c.key == key)
        return self.session.scalar(query.where(test).limit(1)) is not None

    def argument_keys(self) -> list[str]:
        return list(self.session.scalars(text(ARGUMENT_KEYS_SQL)))

    def has_score(self, key: str) -> bool:
        if self.dialect == "postgresql":
            test = func.json_typeof(Run.scores[key]).is_not(None)
        else:
            test = func.json_type(Run.scores, json_path(key)).is_not(None)
        return self.session.scalar(select(literal(1)).select_from(Run).where(test).limit(1)) is not None

    def score_keys(self) -> list[str]:
        if self.dialect == "postgresql":
            query = (select(func.json_object_keys(Run.scores))
                     .where(func.json_typeof(Run.scores) == "object").distinct())
            return list(self.session.scalars(query))
        return list(self.session.scalars(text(SCORE_KEYS_SQL)))


def search_clause(session: Session, wanted: str) -> ColumnElement[bool]:
    """`--search`: the trigram index on SQLite where it exists, else a case-insensitive
    substring of the name, notes or raw arguments (ILIKE on PostgreSQL)."""
    from sqlalchemy import inspect, or_

    if session.get_bind().dialect.name == "sqlite" and len(wanted) >= SEARCH_MIN_INDEXED \
            and inspect(session.connection()).has_table(SEARCH_INDEX):
        return Run.id.in_(select(text_column("rowid")).select_from(text(SEARCH_INDEX))
                          .where(text(f"{SEARCH_INDEX} MATCH :phrase").bindparams(phrase=fts_phrase(wanted))))
    return or_(*(getattr(Run, c).icontains(wanted, autoescape=True) for c in SEARCH_COLUMNS))


def list_query(session: Session, wheres: list[str], sort: Optional[str], limit: Optional[int],
               search: Optional[str] = None) -> Select[tuple[Run]]:
    probe = ArgumentProbe(session)
    query = select(Run).options(selectinload(Run.parent))
    wanted = search_text(search)
    if wanted is not None:
        query = query.where(search_clause(session, wanted))
    preds = [predicate(checked_condition(parse_where(expr), probe)) for expr in wheres]
    for clause in filter_clauses(session, preds, limit):
        query = query.where(clause)
    if sort:
        sort = checked_sort(sort, probe)
        query = query.order_by(sort_expression(sort), Run.position, Run.id)
        if limit is not None:
            query = query.limit(limit)
    elif limit is not None:
        # Ledger order with a limit: the newest N, still shown newest last.
        query = query.order_by(Run.position.desc(), Run.id.desc()).limit(limit)
    else:
        query = query.order_by(Run.position, Run.id)
    return query


def list_runs(session: Session, *, where: Iterable[str] = (), sort: Optional[str] = None,
              limit: Optional[int] = None, search: Optional[str] = None) -> list[Run]:
    check_limit(limit)
    runs = list(session.scalars(list_query(session, list(where), sort, limit, search)))
    if not sort and limit is not None:
        runs.reverse()
    return runs


def get_run(session: Session, name: str, *, for_update: bool = False) -> Run:
    """The run called `name`; a LedgerError naming the closest names if there is none.

    `for_update`: lock the row until the transaction ends (PostgreSQL's SELECT ... FOR
    UPDATE), for a read-modify-write; SQLite's write transactions are serialised already.
    """
    query = select(Run).where(Run.name == name)
    run = session.scalars(query.with_for_update() if for_update else query).first()
    if run is not None:
        return run
    raise unknown_run(name, session_names(session))


def session_names(session: Session) -> IndexedNames:
    """`ledger.core.filters.NameSource` through a session: the name indexes, and on SQLite
    the names' trigram index where it exists."""
    from sqlalchemy import inspect

    trigram = session.get_bind().dialect.name == "sqlite" and inspect(session.connection()).has_table(NAMES_INDEX)
    return IndexedNames(lambda sql, params: session.execute(text(sql), params), trigram)


class SessionReader:
    """The read commands' queries through a SQLAlchemy session (see `ledger.store.readers.reading`)."""

    def __init__(self, session: Session):
        self.session = self.source = session  # `source`: what `ledger.store.export.export_flat` reads

    def list_runs(self, *, where: Iterable[str] = (), sort: Optional[str] = None,
                  limit: Optional[int] = None, search: Optional[str] = None) -> list[Run]:
        return list_runs(self.session, where=where, sort=sort, limit=limit, search=search)

    def iter_runs(self, *, where: Iterable[str] = (), sort: Optional[str] = None, search: Optional[str] = None,
                  batch: int = 1000) -> Iterator[list[Run]]:
        """`list_runs` without a limit, in batches, as `SqliteReader.iter_runs` gives them (this
        path reads them all first: the ORM loads a run's relations with it)."""
        runs = self.list_runs(where=where, sort=sort, search=search)
        return iter([runs[start:start + batch] for start in range(0, len(runs), batch)])

    def get_run(self, name: str) -> Run:
        return get_run(self.session, name)

    def last_metrics(self, run_ids: list[int]) -> dict[int, dict[str, float]]:
        """The last value of each metric series of these runs."""
        out: dict[int, dict[str, float]] = {}
        for start in range(0, len(run_ids), 500):
            query = (select(Metric.run_id, Metric.name, Metric.value)
                     .where(Metric.run_id.in_(run_ids[start:start + 500]))
                     .order_by(Metric.run_id, Metric.name, Metric.step))
            for run_id, name, value in self.session.execute(query):
                out.setdefault(run_id, {})[name] = value
        return out
