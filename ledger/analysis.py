"""What each change did: compare runs, walk the log's history, audit it, and record scores.

Library functions take a Session and return plain dataclasses whose `to_dict()` is what
`--json` prints. Jobs come from `reproduce.resolve` (pure Python): a row without a stored
job is resolved from its recorded arguments, without overrides; a row that has one (a
reproduction, or a run started from the ledger) is compared as it ran.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Optional
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.db import LedgerError
from ledger.markdown import unescape_cell
from ledger.models import Document, Run
from ledger.queries import get_run, list_runs, nest_children
from ledger.records import parse_lb, parse_links, roles_for
from reproduce.job import JOB_FIELDS, RUNTIME_FIELDS
from reproduce.resolve import ResolveError, RowInput, resolve

DEFAULT_TOL = 0.01
# (column, label) of the scores compare and history show.
METRICS = (("lb_miou", "LB mIoU"), ("val_miou", "val mIoU"), ("lb_val_miou", "val mIoU (LB metric)"))
# Fields that label a job rather than define it: left out of diffs unless asked for.
LABEL_FIELDS = RUNTIME_FIELDS | {"code_state"}


# --------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class JobView:
    """A run's job as plain data: the stored one, or its row resolved without overrides."""

    job: Optional[dict[str, Any]]
    sources: dict[str, str]
    hash: Optional[str]
    error: Optional[str] = None
    overridden: tuple[str, ...] = ()
    recorded_by: dict[str, str] = field(default_factory=dict)  # field -> the argument that set it


def job_view(run: Run) -> JobView:
    stored = run.job or {}
    if isinstance(stored.get("job"), dict):
        provenance = stored.get("provenance") or {}
        sources = {f: (p or {}).get("source", "") for f, p in provenance.items()}
        overridden = tuple(f for f in JOB_FIELDS if sources.get(f) == "override")
        recorded_by = _recorded_by({f: (p or {}).get("detail", "") for f, p in provenance.items()}, sources)
        return JobView(dict(stored["job"]), sources, run.job_hash or stored.get("hash"),
                       overridden=overridden, recorded_by=recorded_by)
    if run.kind == "reproduction":
        return JobView(None, {}, run.job_hash, error="no job was recorded for this reproduction")
    try:
        resolved = resolve(RowInput(run.name, run.date, run.args, run.args_status, run.args_error, run.kind))
    except ResolveError as exc:
        return JobView(None, {}, None, error=str(exc))
    sources = {f: p.source for f, p in resolved.provenance.items()}
    details = {f: p.detail for f, p in resolved.provenance.items()}
    return JobView(resolved.job.to_dict(), sources, resolved.job.hash(), recorded_by=_recorded_by(details, sources))


_DETAIL_KEY = re.compile(r"^(\w+)=")


def _recorded_by(details: dict[str, str], sources: dict[str, str]) -> dict[str, str]:
    # A recorded field's provenance detail starts with the argument, e.g. "criterion='focal'".
    out = {}
    for name, detail in details.items():
        match = _DETAIL_KEY.match(detail or "")
        if sources.get(name) == "recorded" and match:
            out[name] = match.group(1)
    return out


def experiment_key(job: Optional[dict[str, Any]]) -> Optional[str]:
    """Identity of an experiment up to its seed: seed repeats of one job share it."""
    if job is None:
        return None
    data = {k: v for k, v in job.items() if k not in RUNTIME_FIELDS and k != "seed"}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def _arguments(run: Run) -> Optional[dict[str, Any]]:
    """The recorded arguments; a reproduction without its own has its original's."""
    if run.args is not None:
        return dict(run.args)
    if run.kind == "reproduction" and run.parent is not None and run.parent.args is not None:
        return dict(run.parent.args)
    return None


def _same(a: Any, b: Any) -> bool:
    # JSON text tells True from 1 and 20 from 20.0, which == does not.
    return json.dumps(a, sort_keys=True, default=repr) == json.dumps(b, sort_keys=True, default=repr)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key in sorted(data, key=str):
            out.update(_flatten(data[key], f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


# ------------------------------------------------------------------- repeats


@dataclass(frozen=True)
class Repeats:
    """Sibling reproductions of one run with the same job up to the seed."""

    n: int
    mean: float
    std: Optional[float]  # sample standard deviation; None with one repeat
    runs: tuple[str, ...]
    values: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "std": self.std, "runs": list(self.runs), "values": list(self.values)}


def _finished_reproductions(run: Run) -> list[Run]:
    return [c for c in run.children if c.kind == "reproduction" and c.status in (None, "finished")
            and c.val_miou is not None]


def _summary(runs: list[Run]) -> Repeats:
    values = [r.val_miou for r in runs]
    return Repeats(len(values), statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None,
                   tuple(r.name for r in runs), tuple(values))


def repeats_of(run: Run) -> Optional[Repeats]:
    """The val mIoU of a run's repeats: for a reproduction its sibling group, for another run
    the largest group of its reproductions (ties: the earliest). None without any."""
    if run.kind == "reproduction":
        if run.parent is None:
            return None
        key = experiment_key(job_view(run).job)
        group = [c for c in _finished_reproductions(run.parent) if experiment_key(job_view(c).job) == key]
        return _summary(group) if group else None
    groups: dict[Optional[str], list[Run]] = {}
    for child in sorted(_finished_reproductions(run), key=lambda c: (c.position, c.id)):
        groups.setdefault(experiment_key(job_view(child).job), []).append(child)
    if not groups:
        return None
    return _summary(max(groups.values(), key=len))


def spread_check(a: Optional[Repeats], b: Optional[Repeats]) -> Optional[dict[str, Any]]:
    """Whether the mean val mIoU moved by more than the two runs' spreads together (their
    mean +- 1 std intervals do not overlap); None unless both have at least two repeats."""
    if a is None or b is None or a.n < 2 or b.n < 2:
        return None
    delta = b.mean - a.mean
    spread = (a.std or 0.0) + (b.std or 0.0)
    return {"delta": delta, "spread": spread, "exceeds": abs(delta) > spread}


# ------------------------------------------------------------------- compare


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
    metrics = []
    for column, _ in METRICS:
        a, b = getattr(original, column), getattr(reproduction, column)
        if a is not None and b is not None:
            metrics.append({"metric": column, "original": a, "reproduction": b, "delta": b - a,
                            "within_tol": abs(b - a) <= tol + 1e-12})
    mine, theirs = job_view(reproduction), job_view(original)
    differing: list[str] = []
    if mine.job is not None and theirs.job is not None:
        differing = [f for f in JOB_FIELDS if f not in RUNTIME_FIELDS
                     and not _same(mine.job.get(f), theirs.job.get(f))]
    same_job = None if mine.hash is None or theirs.hash is None else mine.hash == theirs.hash
    same_data = None
    if original.data_fingerprint and reproduction.data_fingerprint:
        same_data = _same(original.data_fingerprint, reproduction.data_fingerprint)
    return Agreement(reproduction.name, original.name, metrics, same_job, theirs.hash, mine.hash,
                     list(mine.overridden), differing, same_data)


@dataclass
class Comparison:
    """The differences between runs; every list of values is in the order the runs were given."""

    runs: list[dict[str, Any]]
    arguments: list[dict[str, Any]]  # key, values, present
    job: list[dict[str, Any]]  # field, values, sources
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
    views = [job_view(run) for run in runs]

    run_info = [{"name": r.name, "kind": r.kind, "parent": r.parent.name if r.parent else None, "date": r.date,
                 "status": r.status, "job_hash": v.hash, "job_error": v.error, "overridden": list(v.overridden)}
                for r, v in zip(runs, views)]

    args = [_arguments(r) for r in runs]
    keys = sorted({k for a in args if a for k in a})
    arguments = []
    for key in keys:
        present = [a is not None and key in a for a in args]
        values = [a.get(key) if a else None for a in args]
        differs = any(not (p == present[0] and _same(v, values[0])) for p, v in zip(present, values))
        if differs or all_fields:
            arguments.append({"key": key, "values": values, "present": present})

    job_rows = []
    if any(v.job is not None for v in views):
        for name in JOB_FIELDS:
            if name in RUNTIME_FIELDS and not all_fields:
                continue
            values = [v.job.get(name) if v.job is not None else None for v in views]
            known = [val for v, val in zip(views, values) if v.job is not None]
            if all_fields or any(not _same(val, known[0]) for val in known):
                job_rows.append({"field": name, "values": values,
                                 "sources": [v.sources.get(name) if v.job is not None else None for v in views]})

    metrics = []
    for column, label in METRICS:
        values = [getattr(r, column) for r in runs]
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

    return Comparison(run_info, arguments, job_rows, metrics, environment, data,
                      [g.to_dict() if g else None for g in repeat_groups], repeat_deltas, agreements, tol, all_fields)


def _dict_differences(dicts: list[Optional[dict[str, Any]]], all_fields: bool) -> list[dict[str, Any]]:
    """Keys whose values differ among the runs that have the dict at all."""
    flat = [_flatten(d) if d else None for d in dicts]
    have = [f for f in flat if f is not None]
    if not have or (len(have) < 2 and not all_fields):
        return []
    rows = []
    for key in sorted({k for f in have for k in f}):
        values = [f.get(key) if f is not None else None for f in flat]
        known = [f.get(key) for f in have]
        if all_fields or any(not _same(v, known[0]) for v in known):
            rows.append({"key": key, "values": values})
    return rows


# ------------------------------------------------------------------- history


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    previous_view: Optional[JobView] = None
    previous_repeats: Optional[Repeats] = None
    scored: Optional[Run] = None
    for run, depth in nest_children(list_runs(session)):
        entry = HistoryEntry(run.name, run.date, run.kind, depth, run.parent.name if run.parent else None,
                             run.status, run.lb_miou, val_miou=run.val_miou, lb_val_miou=run.lb_val_miou,
                             notes=run.notes)
        if run.kind == "reproduction":
            view = job_view(run)
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
        view = job_view(run)
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


def _describe_change(entry: HistoryEntry, before: Run, before_view: JobView, after: Run, after_view: JobView) -> None:
    entry.previous = before.name
    a, b = before.args, after.args
    for key in sorted(set(a) | set(b)) if a is not None and b is not None else []:
        if key == "run_name":
            continue
        if (key in a) != (key in b) or not _same(a.get(key), b.get(key)):
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
    if not _same(old.get("code_state"), new.get("code_state")):
        entry.code_state = {"before": old.get("code_state"), "after": new.get("code_state")}
    for name in JOB_FIELDS:
        if name in LABEL_FIELDS or _same(old.get(name), new.get(name)):
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


# --------------------------------------------------------------------- check


@dataclass(frozen=True)
class Finding:
    run: str
    row: int  # 1-based, in ledger order
    severity: str  # error | warning | info
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckReport:
    findings: list[Finding]

    @property
    def errors(self) -> int:
        return sum(f.severity == "error" for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.severity == "warning" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"findings": [f.to_dict() for f in self.findings], "errors": self.errors, "warnings": self.warnings}


_NUM = r"(?:\d+(?:\.\d*)?(?:e[-+]?\d+)?|\.\d+(?:e[-+]?\d+)?)"
_ARROW = r"\s*(?:->|→|=>)\s*"
# Recorded arguments the notes may state a value for, by the words the notes use.
_NOTE_ARGS = {"weight_decay": "weight_decay", "lr": "lr", "batch_size": "batch_size", "num_epochs": "num_epochs",
              "epochs": "num_epochs", "seed": "seed"}
_NOTE_ARG = re.compile(rf"\b({'|'.join(_NOTE_ARGS)})\b\s*[:=]?\s*(?:({_NUM}){_ARROW})?({_NUM})", re.IGNORECASE)
_CHANGE_WORDS = re.compile(r"^\S*\s*(?:변경|바꿈|change|to\b)", re.IGNORECASE)
_NOTE_TMAX = re.compile(rf"\bt_?max\s*[:=]?\s*(?:({_NUM}){_ARROW})?({_NUM})", re.IGNORECASE)
_NOTE_GAMMA = re.compile(rf"\bgamma\s*=\s*({_NUM})", re.IGNORECASE)
_NOTE_AUG = re.compile(r"\b(RandomHorizontalFlip|HorizontalFlip|Rotate|RandomBrightnessContrast)\(([^)]*)\)")
_AUG_FIELDS = {"RandomHorizontalFlip": "hflip_p", "HorizontalFlip": "hflip_p", "Rotate": "rotate_p",
               "RandomBrightnessContrast": "brightness_contrast_p"}
_REMOVED = re.compile(r"^\s*(?:을|를)?\s*(?:제거|삭제|remov|drop)", re.IGNORECASE)
_P = re.compile(rf"\bp\s*=\s*({_NUM})")
# Loss claims in the notes.
_NOTE_SMOOTHING = re.compile(r"label[\s_-]*smooth\w*", re.IGNORECASE)
_NOTE_SINGLE = re.compile(r"dual[\s_-]*loss\s*대신|instead\s+of\s+(?:the\s+)?dual[\s_-]*loss|single[\s_-]*loss",
                          re.IGNORECASE)
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"  # not \w: Korean particles follow loss names ("cross_entropy로")
_NOTE_MULTI = re.compile(rf"{_NUM}\s*\*\s*{_IDENT}(?:\([^)]*\))?\s*\+\s*{_NUM}\s*\*\s*{_IDENT}|\d+\s*:\s*\d+\s*비율|혼용",
                         re.IGNORECASE)
# What a run's name promises, as tokens between underscores.
_NAME_FOCAL = re.compile(r"(?:^|_)focal(?:_|$)")
_NAME_CUTMIX = re.compile(r"(?:^|_)cutmix(?:_|$)")
_NAME_MULTI = re.compile(r"(?:^|_)(?:multi|dual)_loss(?:_|$)")
_NAME_TMAX = re.compile(r"(?:^|_)t_?max_?(\d+)(?:_|$)")
_NAME_GAMMA = re.compile(r"(?:^|_)gamma_?(\d+(?:p\d+)?)(?:_|$)")
_NAME_SMOOTHING = re.compile(r"(?:^|_)(label_smooth[a-z]*)(?:_|$)")
_LOSS_ARGS = ("criterion", "criterion1", "criterion2", "multi_loss")


@dataclass
class _Row:
    run: Run
    index: int
    args: Optional[dict[str, Any]]
    view: Optional[JobView] = None

    @property
    def label(self) -> str:
        return f"row {self.index} ({self.run.name})"


def check_ledger(session: Session, *, tol: float = DEFAULT_TOL) -> CheckReport:
    """Audit the log for contradictions between a row's name, arguments, notes, scores,
    links and reproductions. Each finding names its row and says why.

    Args:
        session: an open ledger session.
        tol: largest absolute val mIoU difference a reproduction may show against its
            original or its siblings.
    """
    if tol < 0:
        raise LedgerError("--tol must be 0 or more")
    rows = [_Row(run, index, dict(run.args) if run.args is not None else None)
            for index, run in enumerate(list_runs(session), start=1)]
    # A reproduction carries its original's arguments (plus overrides) under another name:
    # the rules about names, notes and run_name would only repeat the original's findings.
    logged = [r for r in rows if r.run.kind == "logged"]
    for row in logged:
        if row.args is not None:
            row.view = job_view(row.run)
    findings: list[tuple[int, int, Finding]] = []

    def add(row: _Row, severity: str, code: str, message: str) -> None:
        findings.append((row.index, len(findings), Finding(row.run.name, row.index, severity, code, message)))

    previous_of = {id(b): a for a, b in zip(logged, logged[1:])}
    for row in logged:
        if row.args is not None:
            _check_name(row, add)
        _check_notes(row, previous_of.get(id(row)), add)
    _check_run_names(logged, add)
    _check_scores(session, rows, add)
    _check_links(rows, add)
    _check_reproductions(rows, tol, add)
    return CheckReport([f for _, _, f in sorted(findings, key=lambda t: (t[0], t[1]))])


def _job_value(row: _Row, name: str) -> Any:
    return row.view.job.get(name) if row.view is not None and row.view.job is not None else None


def _source_note(row: _Row, name: str) -> str:
    source = row.view.sources.get(name) if row.view is not None else None
    state = _job_value(row, "code_state")
    if source == "code-state":
        return f" (from the code state {state})"
    return f" (from the {source})" if source else ""


def _criteria(args: dict[str, Any]) -> list[str]:
    out = []
    for key in ("criterion", "criterion1", "criterion2"):
        if args.get(key) is not None:
            out += [p.strip().lower() for p in str(args[key]).split("+")]
    return out


def _multi(args: dict[str, Any]) -> bool:
    return args.get("multi_loss") is True or "+" in str(args.get("criterion", ""))


def _shown(args: dict[str, Any], keys: Iterable[str]) -> str:
    return ", ".join(f"{k}={args[k]!r}" for k in keys if k in args)


def _close(a: Any, b: Any) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False


def _check_name(row: _Row, add: Any) -> None:
    name, args = row.run.name.lower(), row.args or {}
    criteria = _criteria(args)
    if _NAME_FOCAL.search(name) and criteria and not any("focal" in c for c in criteria):
        add(row, "error", "name-vs-arguments",
            f"the name says focal, but the arguments record {_shown(args, _LOSS_ARGS)}: no focal loss")
    if _NAME_CUTMIX.search(name) and args.get("cutmix") is not True:
        said = f"cutmix={args['cutmix']!r}" if "cutmix" in args else "no cutmix (default False)"
        add(row, "error", "name-vs-arguments", f"the name says cutmix, but the arguments record {said}")
    if _NAME_MULTI.search(name) and not _multi(args):
        add(row, "error", "name-vs-arguments",
            f"the name says a multi loss, but the arguments record {_shown(args, _LOSS_ARGS) or 'a single loss'}")
    match = _NAME_TMAX.search(name)
    t_max = _job_value(row, "t_max")
    if match and t_max is not None and int(match.group(1)) != t_max:
        add(row, "warning", "name-vs-job",
            f"the name says T_max {match.group(1)}, but the job's T_max is {t_max}{_source_note(row, 't_max')}")
    match = _NAME_GAMMA.search(name)
    gamma = _job_value(row, "focal_gamma")
    uses_focal = "focal" in (_job_value(row, "criterion1"), _job_value(row, "criterion2"))
    if match and gamma is not None and uses_focal and not _close(match.group(1).replace("p", "."), gamma):
        add(row, "warning", "name-vs-job",
            f"the name says focal gamma {match.group(1)}, but the job's focal gamma is {gamma}"
            f"{_source_note(row, 'focal_gamma')}")


def _check_notes(row: _Row, previous: Optional[_Row], add: Any) -> None:
    notes, args = row.run.notes, row.args
    if args is None:
        return
    _check_loss_claims(row, previous, add)
    if not notes:
        return
    for match in _NOTE_ARG.finditer(notes):
        word, old, new = match.group(1), match.group(2), match.group(3)
        key = _NOTE_ARGS[word.lower()]
        value = args[key] if key in args else _job_value(row, key)
        if value is None:
            continue
        if not _close(new, value):
            add(row, "error", "notes-vs-arguments",
                f"the notes say {match.group(0).strip()!r}, but the arguments record {key}={value!r}")
            continue
        claims_change = old is not None or _CHANGE_WORDS.match(notes[match.end():])
        if previous is None or not claims_change or previous.args is None:
            continue
        before = previous.args[key] if key in previous.args else _job_value(previous, key)
        if old is not None and before is not None and not _close(old, before):
            add(row, "warning", "notes-vs-arguments",
                f"the notes say {match.group(0).strip()!r}, but the previous {previous.label} records {key}={before!r}")
        elif before is not None and _close(before, value):
            add(row, "warning", "notes-vs-arguments",
                f"the notes say {match.group(0).strip()!r} as a change, but the previous {previous.label} "
                f"already records {key}={before!r}")
    if row.view is None or row.view.job is None:
        return
    for match in _NOTE_TMAX.finditer(notes):
        old, new = match.group(1), match.group(2)
        t_max = _job_value(row, "t_max")
        if not _close(new, t_max):
            add(row, "warning", "notes-vs-job",
                f"the notes say {match.group(0).strip()!r}, but the job's T_max is {t_max}{_source_note(row, 't_max')}")
        elif old is not None and previous is not None and _job_value(previous, "t_max") is not None \
                and not _close(old, _job_value(previous, "t_max")):
            add(row, "warning", "notes-vs-job",
                f"the notes say {match.group(0).strip()!r}, but the previous {previous.label} ran with "
                f"T_max {_job_value(previous, 't_max')}{_source_note(previous, 't_max')}")
    for match in _NOTE_GAMMA.finditer(notes):
        gamma = match.group(1)
        if not any("focal" in c for c in _criteria(args)) and _criteria(args):
            add(row, "error", "notes-vs-arguments",
                f"the notes give focal {match.group(0)!r}, but the arguments record no focal loss "
                f"({_shown(args, _LOSS_ARGS)})")
        elif not _close(gamma, _job_value(row, "focal_gamma")):
            add(row, "warning", "notes-vs-job",
                f"the notes say {match.group(0)!r}, but the job's focal gamma is {_job_value(row, 'focal_gamma')}"
                f"{_source_note(row, 'focal_gamma')}")
    for match in _NOTE_AUG.finditer(notes):
        p = _P.search(match.group(2))
        if p is None or _REMOVED.match(notes[match.end():]):
            continue
        name = _AUG_FIELDS[match.group(1)]
        if not _close(p.group(1), _job_value(row, name)):
            add(row, "warning", "notes-vs-job",
                f"the notes say {match.group(0)!r}, but the job's {name} is {_job_value(row, name)}"
                f"{_source_note(row, name)}")


def _check_loss_claims(row: _Row, previous: Optional[_Row], add: Any) -> None:
    """Label smoothing, single or multi loss, claimed by the notes or the name, against the
    recorded loss arguments: one finding per row, naming every claim the arguments deny."""
    args, notes = row.args or {}, row.run.notes or ""
    if not any(k in args for k in _LOSS_ARGS):
        return
    criteria = _criteria(args)
    denied: list[str] = []
    from_notes = False
    smoothing = "label_smoothing" in criteria or any("smooth" in c for c in criteria)
    match = _NOTE_SMOOTHING.search(notes)
    if match and not smoothing:
        denied.append(f"the notes say label smoothing ({match.group(0)!r})")
        from_notes = True
    match = _NAME_SMOOTHING.search(row.run.name.lower())
    if match and not smoothing:
        denied.append(f"the name says label smoothing ({match.group(1)!r})")
    match = _NOTE_SINGLE.search(notes)
    if match and _multi(args):
        denied.append(f"the notes say a single loss ({match.group(0)!r})")
        from_notes = True
    match = _NOTE_MULTI.search(notes)
    if match and not _multi(args) and not _NOTE_SINGLE.search(notes):
        denied.append(f"the notes say a mix of two losses ({match.group(0)!r})")
        from_notes = True
    if not denied:
        return
    message = f"{'; '.join(denied)}; the arguments record {_shown(args, _LOSS_ARGS)}"
    if previous is not None and previous.args is not None and _same(
            {k: v for k, v in args.items() if k != "run_name"},
            {k: v for k, v in previous.args.items() if k != "run_name"}):
        message += f" (the arguments are the same as those of {previous.label}: likely copied from it)"
    add(row, "warning", "notes-vs-arguments" if from_notes else "name-vs-arguments", message)


def _check_run_names(rows: list[_Row], add: Any) -> None:
    by_name = {r.run.name: r for r in rows}
    groups: dict[str, list[_Row]] = {}
    for row in rows:
        recorded = (row.args or {}).get("run_name")
        if not isinstance(recorded, str):
            continue
        groups.setdefault(recorded, []).append(row)
        if recorded != row.run.name:
            other = by_name.get(recorded)
            where = f" (it is the name of {other.label})" if other is not None and other is not row else ""
            add(row, "warning", "run-name-mismatch",
                f"the arguments record run_name={recorded!r}, not the row's name{where}")
    for recorded, group in groups.items():
        if len(group) < 2:
            continue
        owner = next((r for r in group if r.run.name == recorded), group[0])
        for row in group:
            if row is owner:
                continue
            others = ", ".join(r.label for r in group if r is not row)
            add(row, "warning", "run-name-shared",
                f"run_name={recorded!r} is also the run_name of {others}: their W&B runs share one name")


def _check_scores(session: Session, rows: list[_Row], add: Any) -> None:
    document = session.scalars(select(Document)).first()
    if document is None:
        return
    roles = roles_for(list(document.headers))
    if "lb" not in roles:
        return  # the log keeps its scores in the notes; nothing to disagree with
    header = document.headers[roles.index("lb")]
    for row in rows:
        if row.run.cells is None:
            continue
        column = parse_lb(unescape_cell(row.run.cells.get(header, "")))
        noted = parse_lb(row.run.notes)
        if noted is None:
            continue
        if column is None:
            add(row, "warning", "score-missing",
                f"the notes state an LB score of {noted:g}, but the {header!r} column is empty")
        elif not _close(column, noted):
            add(row, "error", "score-mismatch",
                f"the notes state an LB score of {noted:g}, but the {header!r} column says {column:g}")


def _link_key(url: str) -> str:
    # `?workspace=user-...` only picks whose view of the W&B page opens.
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), "", ""))


def _check_links(rows: list[_Row], add: Any) -> None:
    first: dict[str, _Row] = {}
    for row in rows:
        for url in dict.fromkeys(row.run.links or []):
            key = _link_key(url)
            if key in first and first[key] is not row:
                add(row, "error", "link-shared", f"the W&B link {url} is also on {first[key].label}")
            first.setdefault(key, row)


def _check_reproductions(rows: list[_Row], tol: float, add: Any) -> None:
    index = {r.run.id: r for r in rows}
    siblings: dict[tuple[int, Optional[str]], list[_Row]] = {}
    for row in rows:
        run = row.run
        if run.kind != "reproduction" or run.parent is None or run.status not in (None, "finished"):
            continue
        original = run.parent
        mine = job_view(run)
        key = experiment_key(mine.job)
        if run.val_miou is not None:
            siblings.setdefault((original.id, key), []).append(row)
        if key is None or key != experiment_key(job_view(original).job):
            continue  # another experiment (overrides): its scores need not agree
        for column, label in METRICS:
            a, b = getattr(original, column), getattr(run, column)
            if a is not None and b is not None and abs(b - a) > tol + 1e-12:
                where = index[original.id].label if original.id in index else original.name
                add(row, "warning", "reproduction-disagrees",
                    f"{label} {b:.4f} differs by {b - a:+.4f} from the original's {a:.4f} ({where}), "
                    f"more than the tolerance {tol:g}")
    for group in siblings.values():
        if len(group) < 2:
            continue
        values = [r.run.val_miou for r in group]
        if max(values) - min(values) <= tol + 1e-12:
            continue
        mean = statistics.fmean(values)
        worst = max(reversed(group), key=lambda r: abs(r.run.val_miou - mean))
        add(worst, "warning", "repeats-disagree",
            f"val mIoU {worst.run.val_miou:.4f}; its {len(group)} sibling repeats range "
            f"{min(values):.4f}..{max(values):.4f} (mean {mean:.4f}), wider than the tolerance {tol:g}: "
            + ", ".join(r.run.name for r in group))


# ----------------------------------------------------------------------- set


@dataclass
class SetResult:
    run: str
    changed: list[str]
    lb_miou: Optional[float]
    notes: Optional[str]
    links: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _append_note(notes: Optional[str], text: str) -> str:
    # The log joins its sentences with ". " (row 05-03: "...으로 변경. lb mIoU : 0.6 달성").
    if not notes:
        return text
    notes = notes.rstrip()
    return f"{notes} {text}" if notes.endswith((".", "。", "!", "?")) else f"{notes}. {text}"


def has_lb_column(session: Session) -> bool:
    document = session.scalars(select(Document)).first()
    return document is not None and "lb" in roles_for(list(document.headers))


def set_run(session: Session, name: str, *, lb: Optional[float] = None, note: Optional[str] = None,
            link: Optional[str] = None) -> SetResult:
    """Record what became known after a run: its leaderboard score, a note, a W&B link.

    Where the log has no LB column (the seed keeps scores in its notes), the score is also
    appended to the notes as `lb mIoU : X`, unless they already state it, so that the
    exported log carries it.

    Args:
        session: an open ledger session; the caller commits.
        name: the run.
        lb: the leaderboard mIoU, 0..1.
        note: text appended to the notes.
        link: a W&B run URL added to the run's links.
    """
    if lb is None and note is None and link is None:
        raise LedgerError("nothing to set: pass --lb, --note or --link")
    run = get_run(session, name)
    changed: list[str] = []
    if note is not None:
        text = note.strip()
        if not text:
            raise LedgerError("--note is empty")
        run.notes = _append_note(run.notes, text)
        changed.append("notes")
    if lb is not None:
        if not (isinstance(lb, (int, float)) and 0.0 <= lb <= 1.0):
            raise LedgerError(f"--lb must be an mIoU between 0 and 1, not {lb}")
        lb = float(lb)
        if run.lb_miou != lb:
            run.lb_miou = lb
            changed.append("lb_miou")
        if not has_lb_column(session) and parse_lb(run.notes) != lb:
            run.notes = _append_note(run.notes, f"lb mIoU : {lb:g}")
            if "notes" not in changed:
                changed.append("notes")
    if link is not None:
        url = link.strip()
        if not re.fullmatch(r"https?://[^\s()<>|\[\]]+", url) or parse_links(f"[x]({url})") != [url]:
            raise LedgerError(f"--link must be a http(s) URL without spaces, brackets or '|', not {link!r}")
        key = _link_key(url)
        for other in session.scalars(select(Run).where(Run.id != run.id)):
            if any(_link_key(u) == key for u in other.links or []):
                raise LedgerError(f"the link {url} is already on the run {other.name!r}")
        if all(_link_key(u) != key for u in run.links or []):
            run.links = list(run.links or []) + [url]
            changed.append("links")
    session.flush()
    return SetResult(run.name, changed, run.lb_miou, run.notes, list(run.links or []))
