"""The log's history: each logged run against the logged run before it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from sqlalchemy.orm import Session

from ledger.analysis.jobs import LABEL_FIELDS, RunJob, run_job, same
from ledger.analysis.repeats import Repeats, repeats_of, spread_check
from ledger.store.models import Run
from ledger.store.shapes import nest_children
from ledger.store.sql_reader import list_runs
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    """
    entries: list[HistoryEntry] = []
    previous: Optional[Run] = None
    previous_view: Optional[RunJob] = None
    previous_repeats: Optional[Repeats] = None
    scored: Optional[Run] = None
    for run, depth in nest_children(list_runs(session)):
        entry = HistoryEntry(run.name, run.date, run.kind, depth, run.parent.name if run.parent else None,
                             run.status, run.lb_miou, val_miou=run.val_miou, lb_val_miou=run.lb_val_miou,
                             notes=run.notes, sweep=sweep_of(run))
        if run.kind == "reproduction":
            view = run_job(run)
            entry.job_error = view.error
            if view.job is not None:
                entry.overrides = {f: view.job.get(f) for f in view.overridden}
            entries.append(entry)
            continue
        if run.lb_miou is not None:
            if scored is not None:
                entry.lb_delta = run.lb_miou - scored.lb_miou
                entry.delta_from = scored.name
            scored = run
        view = run_job(run)
        entry.job_error = view.error
        repeats = repeats_of(run)
        entry.repeats = repeats.to_dict() if repeats else None
        if run.kind == "logged":
            if previous is not None:
                _describe_change(entry, previous, previous_view, run, view)
                entry.repeats_delta = spread_check(previous_repeats, repeats)
            previous, previous_view, previous_repeats = run, view, repeats
        entries.append(entry)
    return entries


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
    for name in JOB_FIELDS:
        if name in LABEL_FIELDS or same(old.get(name), new.get(name)):
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

