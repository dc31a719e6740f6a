"""Compare runs: the arguments and job fields that differ, score deltas, and whether a
reproduction agrees with its original."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

from sqlalchemy.orm import Session

from ledger.analysis import DEFAULT_TOL
from ledger.analysis.jobs import METRICS, arguments_of, flatten, run_job, same
from ledger.analysis.history import sweep_of
from ledger.analysis.repeats import repeats_of, spread_check
from ledger.core.errors import LedgerError
from ledger.store.models import Run
from ledger.store.sql_reader import get_run
from reproduce.job import JOB_FIELDS, RUNTIME_FIELDS


@dataclass
class Agreement:
    """A reproduction against its original: same score (within tol), same job, same data."""

    reproduction: str
    original: str
    metrics: list[dict[str, Any]]
    same_job: Optional[bool]
    original_hash: Optional[str]
    reproduction_hash: Optional[str]
    overridden: list[str]
    differing_fields: list[str]
    same_data: Optional[bool]

    @property
    def agrees(self) -> Optional[bool]:
        """False if any check fails; None (cannot tell) without a score both runs have."""
        if self.same_job is False or self.same_data is False or not all(m["within_tol"] for m in self.metrics):
            return False
        return True if self.metrics and self.same_job else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"agrees": self.agrees}


def agreement(original: Run, reproduction: Run, tol: float = DEFAULT_TOL) -> Agreement:
    """Compare a reproduction with the run it reproduces.

    Args:
        original: the run reproduced.
        reproduction: the reproduction.
        tol: largest absolute difference of a score that still agrees.
    """
    mine, theirs = run_job(reproduction), run_job(original)
    if mine.command is not None and theirs.command is not None:
        return _command_agreement(original, reproduction, mine, theirs, tol)
    metrics = []
    for column, _ in METRICS:
        a, b = getattr(original, column), getattr(reproduction, column)
        if a is not None and b is not None:
            metrics.append({"metric": column, "original": a, "reproduction": b, "delta": b - a,
                            "within_tol": abs(b - a) <= tol + 1e-12})
    differing: list[str] = []
    if mine.job is not None and theirs.job is not None:
        differing = [f for f in JOB_FIELDS if f not in RUNTIME_FIELDS
                     and not same(mine.job.get(f), theirs.job.get(f))]
    same_job = None if mine.hash is None or theirs.hash is None else mine.hash == theirs.hash
    same_data = None
    if original.data_fingerprint and reproduction.data_fingerprint:
        same_data = same(original.data_fingerprint, reproduction.data_fingerprint)
    return Agreement(reproduction.name, original.name, metrics, same_job, theirs.hash, mine.hash,
                     list(mine.overridden), differing, same_data)


def final_values(run: Run) -> dict[str, float]:
    """Each metric series' value at its last step."""
    last: dict[str, tuple[int, float]] = {}
    for metric in run.metrics:
        if metric.name not in last or metric.step >= last[metric.name][0]:
            last[metric.name] = (metric.step, metric.value)
    return {name: value for name, (_, value) in sorted(last.items())}


def _command_agreement(original: Run, reproduction: Run, mine: Any, theirs: Any, tol: float) -> Agreement:
    """Two command rows: every metric both reported, by its final value, within `tol`; the
    same command, folder, commit and change."""
    a, b = final_values(original), final_values(reproduction)
    metrics = [{"metric": k, "original": a[k], "reproduction": b[k], "delta": b[k] - a[k],
                "within_tol": abs(b[k] - a[k]) <= tol + 1e-12} for k in sorted(set(a) & set(b))]
    differing = [k for k in mine.command if mine.command[k] != theirs.command[k]]
    overridden = sorted((reproduction.command or {}).get("overrides") or {})
    return Agreement(reproduction.name, original.name, metrics, not differing, theirs.hash, mine.hash, overridden,
                     differing, None)


@dataclass
class Comparison:
    """The differences between runs; every list of values is in the order the runs were given."""

    runs: list[dict[str, Any]]
    arguments: list[dict[str, Any]]  # key, values, present
    job: list[dict[str, Any]]  # field, values, sources
    command: list[dict[str, Any]]  # key, values (rows without a command: None)
    metrics: list[dict[str, Any]]  # metric, label, values, deltas (to the first run)
    environment: list[dict[str, Any]]  # key, values (runs without an environment: None)
    data: list[dict[str, Any]]
    repeats: list[Optional[dict[str, Any]]]
    repeat_deltas: list[Optional[dict[str, Any]]]  # against the first run; None for it
    agreements: list[Agreement]
    tol: float
    all: bool

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["agreements"] = [a.to_dict() for a in self.agreements]
        return out


def compare_runs(session: Session, names: list[str], *, all_fields: bool = False,
                 tol: float = DEFAULT_TOL) -> Comparison:
    """Compare two or more runs, the first being the reference for deltas.

    Args:
        session: an open ledger session.
        names: run names, at least two, each once.
        all_fields: list every argument and job field, not only those that differ.
        tol: largest absolute score difference for which a reproduction agrees with its original.
    """
    if len(names) < 2:
        raise LedgerError("compare needs at least two runs")
    seen = [n for i, n in enumerate(names) if n in names[:i]]
    if seen:
        raise LedgerError(f"{seen[0]!r} is given twice")
    if tol < 0:
        raise LedgerError("--tol must be 0 or more")
    runs = [get_run(session, name) for name in names]
    views = [run_job(run) for run in runs]

    run_info = [{"name": r.name, "kind": r.kind, "parent": r.parent.name if r.parent else None, "date": r.date,
                 "status": r.status, "job_hash": v.hash, "job_error": v.error, "overridden": list(v.overridden),
                 "sweep": sweep_of(r)}
                for r, v in zip(runs, views)]

    args = [arguments_of(r) for r in runs]
    keys = sorted({k for a in args if a for k in a})
    arguments = []
    for key in keys:
        present = [a is not None and key in a for a in args]
        values = [a.get(key) if a else None for a in args]
        differs = any(not (p == present[0] and same(v, values[0])) for p, v in zip(present, values))
        if differs or all_fields:
            arguments.append({"key": key, "values": values, "present": present})

    job_rows = []
    if any(v.job is not None for v in views):
        for name in JOB_FIELDS:
            if name in RUNTIME_FIELDS and not all_fields:
                continue
            values = [v.job.get(name) if v.job is not None else None for v in views]
            known = [val for v, val in zip(views, values) if v.job is not None]
            if all_fields or any(not same(val, known[0]) for val in known):
                job_rows.append({"field": name, "values": values,
                                 "sources": [v.sources.get(name) if v.job is not None else None for v in views]})

    command_rows = []
    if any(v.command is not None for v in views):
        for key in ("command", "cwd", "commit", "change"):
            values = [v.command[key] if v.command is not None else None for v in views]
            if all_fields or any(value != values[0] for value in values):
                command_rows.append({"key": key, "values": values})

    metrics = []
    # The columns every run has, then the score columns of the runs' logs (`scores.<metric>`).
    scores = list(dict.fromkeys(m for r in runs for m in r.scores or {}))
    columns = [(column, label, [getattr(r, column) for r in runs]) for column, label in METRICS]
    columns += [(f"scores.{m}", m, [(r.scores or {}).get(m) for r in runs]) for m in scores]
    for column, label, values in columns:
        deltas = [None] + [None if v is None or values[0] is None else v - values[0] for v in values[1:]]
        metrics.append({"metric": column, "label": label, "values": values, "deltas": deltas})

    environment = _dict_differences([r.environment for r in runs], all_fields)
    data = _dict_differences([r.data_fingerprint for r in runs], all_fields)

    repeat_groups = [repeats_of(r) for r in runs]
    # A reproduction of the first run has the first run's repeats: nothing to weigh.
    repeat_deltas = [None] + [None if g is not None and repeat_groups[0] is not None and g.runs == repeat_groups[0].runs
                              else spread_check(repeat_groups[0], g) for g in repeat_groups[1:]]

    agreements = []
    by_id = {r.id: r for r in runs}
    for run in runs:
        if run.kind == "reproduction" and run.parent_id in by_id:
            agreements.append(agreement(by_id[run.parent_id], run, tol))

    return Comparison(run_info, arguments, job_rows, command_rows, metrics, environment, data,
                      [g.to_dict() if g else None for g in repeat_groups], repeat_deltas, agreements, tol, all_fields)


def _dict_differences(dicts: list[Optional[dict[str, Any]]], all_fields: bool) -> list[dict[str, Any]]:
    """Keys whose values differ among the runs that have the dict at all."""
    flat = [flatten(d) if d else None for d in dicts]
    have = [f for f in flat if f is not None]
    if not have or (len(have) < 2 and not all_fields):
        return []
    rows = []
    for key in sorted({k for f in have for k in f}):
        values = [f.get(key) if f is not None else None for f in flat]
        known = [f.get(key) for f in have]
        if all_fields or any(not same(v, known[0]) for v in known):
            rows.append({"key": key, "values": values})
    return rows



def same_job_runs(session: Session, run: Run) -> list[dict[str, Any]]:
    """The other finished runs of this run's exact job (the same hash, seed included), each
    with whether its per-epoch metrics equal this run's bit for bit, and the largest difference."""
    from sqlalchemy import select

    if not run.job_hash:
        return []
    mine = _series(run)
    out = []
    query = (select(Run).where(Run.job_hash == run.job_hash, Run.id != run.id, Run.status == "finished")
             .order_by(Run.position, Run.id))
    for other in session.scalars(query):
        theirs = _series(other)
        shared = [(k, step) for k in mine for step in mine[k] if step in theirs.get(k, {})]
        diff = max((abs(mine[k][step] - theirs[k][step]) for k, step in shared), default=None)
        out.append({"name": other.name, "identical": bool(mine) and mine == theirs, "max_abs_diff": diff})
    return out


def _series(run: Run) -> dict[str, dict[int, float]]:
    series: dict[str, dict[int, float]] = {}
    for metric in run.metrics:
        series.setdefault(metric.name, {})[metric.step] = metric.value
    return series
