"""Reading runs through SQLAlchemy: filters compiled to bound SQL, sorting, lookup by name.

The filter language, its type rules and errors live in `ledger.core.filters`, shared with
the stdlib sqlite3 read path (`ledger.store.sqlite_reader`); here they become SQLAlchemy
expressions, so the same commands work on PostgreSQL and on files that need a migration.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from sqlalchemy import ColumnElement, Select, String, cast, select
from sqlalchemy.orm import Session, selectinload

from ledger.core.filters import (
    COLUMN_NAMES,
    Condition,
    Predicate,
    SortKey,
    check_limit,
    parse_where,
    predicate,
    sort_key,
    unknown_run,
)
from ledger.store.models import Run, Tag

COLUMNS: dict[str, Any] = {name: getattr(Run, name) for name in COLUMN_NAMES}


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


def _target(column: Optional[str], arg_key: Optional[str], read_as: Optional[str]) -> Any:
    if column is not None:
        return cast(COLUMNS[column], String) if read_as == "string" else COLUMNS[column]
    element = Run.args[arg_key]
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
    expr = _target(pred.column, pred.arg_key, pred.read_as)
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
    expr = _target(parsed.column, parsed.arg_key, None if parsed.column else "float")
    expr = expr.desc() if parsed.descending else expr.asc()
    return expr.nulls_last()


def list_query(wheres: list[str], sort: Optional[str], limit: Optional[int]) -> Select[tuple[Run]]:
    query = select(Run).options(selectinload(Run.parent))
    for expr in wheres:
        query = query.where(compile_condition(parse_where(expr)))
    if sort:
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
              limit: Optional[int] = None) -> list[Run]:
    check_limit(limit)
    runs = list(session.scalars(list_query(list(where), sort, limit)))
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
    raise unknown_run(name, list(session.scalars(select(Run.name).order_by(Run.name))))


class SessionReader:
    """The read commands' queries through a SQLAlchemy session (see `ledger.store.readers.reading`)."""

    def __init__(self, session: Session):
        self.session = self.source = session  # `source`: what `ledger.store.export.export_flat` reads

    def list_runs(self, *, where: Iterable[str] = (), sort: Optional[str] = None,
                  limit: Optional[int] = None) -> list[Run]:
        return list_runs(self.session, where=where, sort=sort, limit=limit)

    def get_run(self, name: str) -> Run:
        return get_run(self.session, name)
