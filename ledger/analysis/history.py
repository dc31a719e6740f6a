"""The log's history: each logged run against the logged run before it."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from operator import attrgetter, itemgetter
from types import SimpleNamespace
from typing import Any, Iterator, Optional

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, aliased

from ledger.analysis.jobs import LABEL_FIELDS, JobViews, RunJob, same
from ledger.analysis.repeats import Repeats, repeats_of, spread_check
from ledger.store.models import Run
from reproduce.job import JOB_FIELDS


@dataclass
class HistoryEntry:
    """One row of the log against the logged run before it."""

    name: str
    date: Optional[str]
    kind: str
    depth: int
    parent: Optional[str]
    status: Optional[str]
    lb_miou: Optional[float]
    lb_delta: Optional[float] = None
    delta_from: Optional[str] = None  # the previous scored run
    val_miou: Optional[float] = None
    lb_val_miou: Optional[float] = None
    previous: Optional[str] = None  # the logged run this one is compared with
    argument_changes: list[dict[str, Any]] = field(default_factory=list)
    job_changes: list[dict[str, Any]] = field(default_factory=list)
    code_state: Optional[dict[str, Any]] = None  # before/after, when it changed
    job_error: Optional[str] = None
    notes: Optional[str] = None
    changes: Optional[int] = None  # things that changed at once
    confounded: Optional[bool] = None
    repeats: Optional[dict[str, Any]] = None
    repeats_delta: Optional[dict[str, Any]] = None  # against the previous logged run's repeats
    overrides: Optional[dict[str, Any]] = None  # a reproduction's overridden job fields
    sweep: Optional[dict[str, Any]] = None  # a queued sweep's member: {"group": first row, "values": {...}}
    section: Optional[str] = None  # the heading above the run's table in the log
    scores: Optional[dict[str, Any]] = None  # the log's score columns: {metric: number or None}
    # Each score against the last logged run before it that has a number for it.
    score_deltas: Optional[dict[str, float]] = None

    def to_dict(self) -> dict[str, Any]:
        # The fields as they are (what dataclasses.asdict gives, without its deep copy of
        # every value: a ledger's history is one entry per run).
        return dict(zip(_ENTRY_FIELDS, _entry_values(self)))


_ENTRY_FIELDS = tuple(f.name for f in fields(HistoryEntry))
_entry_values = attrgetter(*_ENTRY_FIELDS)


def sweep_of(run: Run) -> Optional[dict[str, Any]]:
    """The sweep a queued row belongs to (`ledger queue add --sweep`), or None."""
    queue = run.queue or {}
    if not queue.get("sweep") and not queue.get("group"):
        return None
    return {"group": queue.get("group"), "values": queue.get("sweep") or {}, "seed": queue.get("seed")}


def history(session: Session) -> list[HistoryEntry]:
    """The log in ledger order, reproductions under their run, each logged run against the
    logged run before it: what changed, its LB score and delta, and whether the delta can
    be attributed (`confounded` when more than one thing changed at once).

    Counted as one thing each: a recorded argument that changed (`run_name` aside, it is a
    label) and a job field that changed where no changed argument set it (the code state,
    the notes, a default or an override did). Runs without recorded arguments (started
    from the ledger with a stored job) are compared by their jobs alone.

    `iter_history` gives the same entries one at a time.
    """
    return list(iter_history(session))


def iter_history(session: Session) -> Iterator[HistoryEntry]:
    """`history`, an entry at a time, reading the runs a batch at a time: memory does not
    grow with the runs. Each configuration of arguments is resolved once (`JobViews`)."""
    views = JobViews()
    previous: Optional[Any] = None
    previous_view: Optional[RunJob] = None
    previous_repeats: Optional[Repeats] = None
    scored: Optional[Any] = None
    last_scores: dict[str, float] = {}  # each score's value in the last logged run that had one
    for run, depth, parent in _nested(session):
        entry = HistoryEntry(run.name, run.date, run.kind, depth, parent, run.status, run.lb_miou,
                             val_miou=run.val_miou, lb_val_miou=run.lb_val_miou, notes=run.notes,
                             sweep=sweep_of(run), section=run.section, scores=dict(run.scores) if run.scores else None)
        if run.kind != "reproduction" and run.scores:
            entry.score_deltas = {m: v - last_scores[m] for m, v in run.scores.items()
                                  if v is not None and m in last_scores}
            last_scores.update((m, v) for m, v in run.scores.items() if v is not None)
        if run.kind == "reproduction":
            view = views.of(run)
            entry.job_error = view.error
            if view.job is not None:
                entry.overrides = {f: view.job.get(f) for f in view.overridden}
            yield entry
            continue
        if run.lb_miou is not None:
            if scored is not None:
                entry.lb_delta = run.lb_miou - scored.lb_miou
                entry.delta_from = scored.name
            scored = run
        view = views.of(run)
        entry.job_error = view.error
        repeats = repeats_of(run) if type(run) is _WithChildren else None  # (without children, it has none)
        entry.repeats = repeats.to_dict() if repeats else None
        if run.kind == "logged":
            if previous is not None:
                _describe_change(entry, previous, previous_view, run, view)
                entry.repeats_delta = spread_check(previous_repeats, repeats)
            previous, previous_view, previous_repeats = run, view, repeats
        yield entry


class _WithChildren(SimpleNamespace):
    """A run read with the runs made from it (`children`); other runs are plain rows."""


# Columns of a run history and `run_job` read.
_COLUMNS = ("id", "position", "name", "date", "kind", "status", "lb_miou", "val_miou", "lb_val_miou", "notes",
            "queue", "parent_id", "args", "args_raw", "args_status", "args_error", "job", "job_hash", "command",
            "section", "scores")
_BATCH = 1000


def _nested(session: Session) -> Iterator[tuple[Any, int, Optional[str]]]:
    """(run, depth, parent's name) in display order, as `ledger.store.shapes.nest_children`
    orders them: runs in ledger order, each followed by the runs made from it, nested.

    Runs are read a batch at a time, with the runs made from that batch's runs (and from
    those, and so on) in a query or a few; such a run comes with them as `children`
    (for `repeats_of`). Memory holds a batch and its descendants, whatever the ledger's size.
    """
    connection = session.connection()
    parents = set(connection.scalars(select(Run.parent_id).where(Run.parent_id.is_not(None)).distinct()))
    columns = [getattr(Run, c) for c in _COLUMNS]
    children = select(*columns).where(Run.parent_id.in_(bindparam("parents", expanding=True))) \
        .order_by(Run.position, Run.id)

    def descendants(rows: list[Any]) -> dict[int, list[Any]]:
        """parent id -> its children, in ledger order, for `rows` and every run below them."""
        found: dict[int, list[Any]] = {}
        frontier = [row.id for row in rows if row.id in parents]
        while frontier:
            below = []
            for start in range(0, len(frontier), _IN_LIST):
                for child in connection.execute(children, {"parents": frontier[start:start + _IN_LIST]}):
                    found.setdefault(child.parent_id, []).append(child)
                    below.append(child)
            frontier = [row.id for row in below if row.id in parents and row.id not in found]
        return found

    def with_children(row: Any, found: dict[int, list[Any]]) -> Any:
        if row.id not in found:
            return row
        return _WithChildren(**row._mapping, children=[with_children(child, found) for child in found[row.id]])

    def visit(run: Any, depth: int, parent: Optional[str]) -> Iterator[tuple[Any, int, Optional[str]]]:
        yield run, depth, parent
        if type(run) is _WithChildren:  # (asking a row for a column it lacks costs an exception)
            for child in run.children:
                yield from visit(child, depth + 1, run.name)

    # Roots: runs without a parent in the ledger.
    found = aliased(Run)
    roots = (select(*columns).outerjoin(found, Run.parent_id == found.id).where(found.id.is_(None))
             .order_by(Run.position, Run.id))
    for part in connection.execute(roots.execution_options(yield_per=_BATCH)).partitions():
        below = descendants(part)
        for row in part:
            run = with_children(row, below)
            if type(run) is _WithChildren:
                yield from visit(run, 0, None)
            else:
                yield run, 0, None


# Ids bound in one IN list: well under SQLite's and PostgreSQL's limits on parameters.
_IN_LIST = 500


# The job fields compared between runs, in the job's order: those that define the experiment.
_COMPARED_FIELDS = tuple(name for name in JOB_FIELDS if name not in LABEL_FIELDS)
_compared = itemgetter(*_COMPARED_FIELDS)


def _describe_change(entry: HistoryEntry, before: Run, before_view: RunJob, after: Run, after_view: RunJob) -> None:
    entry.previous = before.name
    a, b = before.args, after.args
    for key in sorted(set(a) | set(b)) if a is not None and b is not None else []:
        if key == "run_name":
            continue
        if (key in a) != (key in b) or not same(a.get(key), b.get(key)):
            entry.argument_changes.append({"key": key, "before": a.get(key), "after": b.get(key),
                                           "present": [key in a, key in b]})
    count = len(entry.argument_changes)
    changed_keys = {c["key"] for c in entry.argument_changes}
    if before_view.job is None or after_view.job is None:
        # What the job did cannot be told; more than one argument is still too many.
        entry.changes = count
        entry.confounded = True if count > 1 else None
        return
    old, new = before_view.job, after_view.job
    if not same(old.get("code_state"), new.get("code_state")):
        entry.code_state = {"before": old.get("code_state"), "after": new.get("code_state")}
    try:
        pairs = zip(_COMPARED_FIELDS, _compared(old), _compared(new))
    except KeyError:  # a stored job without some field
        pairs = ((name, old.get(name), new.get(name)) for name in _COMPARED_FIELDS)
    for name, before_value, after_value in pairs:
        if before_value is after_value or same(before_value, after_value):
            continue
        sources = [before_view.sources.get(name), after_view.sources.get(name)]
        # Explained when an argument that changed set this field on either side.
        setters = {before_view.recorded_by.get(name), after_view.recorded_by.get(name)} - {None}
        explained = bool(setters & changed_keys)
        entry.job_changes.append({"field": name, "before": old.get(name), "after": new.get(name),
                                  "sources": sources, "explained": explained})
        if not explained:
            count += 1
    entry.changes = count
    entry.confounded = count > 1

