"""Reading runs: filters compiled to bound SQL, sorting, lookup by name with suggestions."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Optional

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import Session, selectinload

from ledger.args import parse_value
from ledger.db import LedgerError
from ledger.models import Run

# Fields a filter or sort can name directly; anything else is a parsed argument.
COLUMNS: dict[str, Any] = {
    "name": Run.name,
    "date": Run.date,
    "model": Run.model,
    "kind": Run.kind,
    "status": Run.status,
    "lb_miou": Run.lb_miou,
    "val_miou": Run.val_miou,
    "lb_val_miou": Run.lb_val_miou,
    "args_status": Run.args_status,
    "job_hash": Run.job_hash,
    "created_at": Run.created_at,
    "position": Run.position,
}
ALIASES = {"lb": "lb_miou", "val": "val_miou", "score": "lb_miou"}
NUMERIC = {"lb_miou", "val_miou", "lb_val_miou", "position"}

_WHERE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\s*(>=|<=|!=|==|=|>|<|~)\s*(.*?)\s*$")
OPERATORS = ("=", "!=", ">", ">=", "<", "<=", "~")


@dataclass(frozen=True)
class Condition:
    key: str
    op: str
    value: Any

    @property
    def column(self) -> Optional[str]:
        key = ALIASES.get(self.key, self.key)
        return key if key in COLUMNS else None

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


def compile_condition(cond: Condition) -> ColumnElement[bool]:
    """The condition as a SQL expression; the key and the value travel as bound parameters."""
    column = cond.column
    if column is not None:
        expr = COLUMNS[column]
        if cond.op == "~":
            return expr.contains(str(cond.value), autoescape=True)
        value = cond.value
        if column in NUMERIC:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise LedgerError(f"{cond.key} is a number; cannot compare it with {value!r}")
            value = float(value)
        elif value is None:
            return expr.is_(None) if cond.op == "=" else expr.is_not(None)
        else:
            value = str(value)
        return _compare(expr, cond.op, value)

    element = Run.args[cond.arg_key]
    value = cond.value
    if cond.op == "~":
        return element.as_string().contains(str(value), autoescape=True)
    if isinstance(value, bool):
        if cond.op not in ("=", "!="):
            raise LedgerError(f"{cond.key}: True/False can only be compared with = or !=")
        return _compare(element.as_boolean(), cond.op, value)
    if isinstance(value, (int, float)):
        return _compare(element.as_float(), cond.op, float(value))
    if value is None:
        raise LedgerError(f"{cond.key}: comparing an argument with None is not supported; use ~ or a value")
    return _compare(element.as_string(), cond.op, str(value))


def sort_expression(key: str) -> Any:
    """`lb_miou` ascending, `-lb_miou` descending; parsed arguments sort numerically."""
    descending = key.startswith("-")
    name = key.lstrip("-+")
    name = ALIASES.get(name, name)
    if name in COLUMNS:
        expr = COLUMNS[name]
    elif re.fullmatch(r"(args\.)?[A-Za-z_][A-Za-z0-9_]*", name):
        expr = Run.args[name.removeprefix("args.")].as_float()
    else:
        raise LedgerError(f"cannot sort by {key!r}; use a column ({', '.join(COLUMNS)}) or an argument name")
    expr = expr.desc() if descending else expr.asc()
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


def list_runs(session: Session, *, where: list[str] = (), sort: Optional[str] = None, limit: Optional[int] = None) -> list[Run]:
    if limit is not None and limit < 0:
        raise LedgerError("--limit must be 0 or more")
    runs = list(session.scalars(list_query(list(where), sort, limit)))
    if not sort and limit is not None:
        runs.reverse()
    return runs


def nest_children(runs: list[Run]) -> list[tuple[Run, int]]:
    """Runs with reproductions moved under their parent: (run, depth) in display order."""
    present = {run.id for run in runs}
    children: dict[int, list[Run]] = {}
    roots = []
    for run in runs:
        if run.parent_id is not None and run.parent_id in present:
            children.setdefault(run.parent_id, []).append(run)
        else:
            roots.append(run)
    out: list[tuple[Run, int]] = []

    def visit(run: Run, depth: int) -> None:
        out.append((run, depth))
        for child in children.get(run.id, []):
            visit(child, depth + 1)

    for run in roots:
        visit(run, 0)
    return out


def get_run(session: Session, name: str) -> Run:
    """The run called `name`; a LedgerError naming the closest names if there is none."""
    run = session.scalars(select(Run).where(Run.name == name)).first()
    if run is not None:
        return run
    names = list(session.scalars(select(Run.name)))
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    if not close:
        lowered = name.lower()
        close = [n for n in names if lowered in n.lower()][:3]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise LedgerError(f"no run named {name!r}{hint}")


def run_summary(run: Run) -> dict[str, Any]:
    """The fields `ledger list --json` prints for a run."""
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


def run_details(run: Run) -> dict[str, Any]:
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


def _extra_columns(run: Run) -> dict[str, str]:
    from ledger.records import header_role

    return {h: v for h, v in (run.cells or {}).items() if header_role(h) is None}


def _metric_series(run: Run) -> dict[str, list[dict[str, Any]]]:
    series: dict[str, list[dict[str, Any]]] = {}
    for metric in run.metrics:
        series.setdefault(metric.name, []).append({"step": metric.step, "epoch": metric.epoch, "value": metric.value})
    return series
