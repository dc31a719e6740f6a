"""Audit the log: where a row's name, arguments, notes, scores, links and reproductions
contradict each other. Each finding names its row and says why."""

from __future__ import annotations

import math
import re
import statistics
from array import array
from dataclasses import asdict, dataclass
from itertools import islice
from typing import Any, Iterable, Iterator, Optional

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, aliased

from ledger.analysis import DEFAULT_TOL
from ledger.analysis.jobs import METRICS, JobViews, RunJob, experiment_key, same
from ledger.core.cells import link_key, parse_lb, roles_for
from ledger.core.errors import LedgerError
from ledger.core.markdown import unescape_cell
from ledger.store.liveness import reap_stale, stale_reason
from ledger.store.models import Document, Run


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
    fixed: Optional[list[str]] = None  # with `--fix`: the stale rows it marked interrupted

    @property
    def errors(self) -> int:
        return sum(f.severity == "error" for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.severity == "warning" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        out = {"findings": [f.to_dict() for f in self.findings], "errors": self.errors, "warnings": self.warnings}
        return out if self.fixed is None else out | {"fixed": list(self.fixed)}


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


class _Row:
    """A run as the rules see it: its columns (`_rows`), its row number, its arguments."""

    __slots__ = ("run", "index", "args", "views", "_view")

    def __init__(self, run: Any, index: int, args: Optional[dict[str, Any]], views: Optional[JobViews] = None):
        self.run, self.index, self.args = run, index, args
        self.views = views  # where its job comes from; None: it has none to check
        self._view: Any = False

    @property
    def label(self) -> str:
        return f"row {self.index} ({self.run.name})"

    @property
    def view(self) -> Optional[RunJob]:
        # Resolved when a rule first needs it: most rows never do.
        if self._view is False:
            self._view = self.views.of(self.run) if self.views is not None else None
        return self._view


# Where in the old order of the rules each finding of a row comes: findings are sorted by
# row, then by this, then in the order they were made.
_NAMES_AND_NOTES, _RUN_NAME_MISMATCH, _RUN_NAME_SHARED, _SCORES, _LINKS, _REPRODUCTION, _REPEATS, _STALE = range(8)


def check_ledger(session: Session, *, tol: float = DEFAULT_TOL, fix: bool = False) -> CheckReport:
    """Audit the log for contradictions between a row's name, arguments, notes, scores,
    links and reproductions. Each finding names its row and says why.

    The runs are read once, in ledger order, a batch at a time: what one rule needs of
    other rows (the row before, the rows sharing a link or a run_name, a reproduction's
    original) is kept as hashes and row numbers, and the few rows that may match are read
    again to be sure. Memory does not grow with the runs, only with the findings.

    Args:
        session: an open ledger session.
        tol: largest absolute val mIoU difference a reproduction may show against its
            original or its siblings.
        fix: mark running rows whose trainer is gone `interrupted` (the session must be
            a write transaction; the caller commits).
    """
    if tol < 0:
        raise LedgerError("--tol must be 0 or more")
    fixed = reap_stale(session) if fix else None
    audit = _Audit(session, tol, fixed or [])
    for row in _rows(session, audit.views, cells=any(audit.score_headers)):
        audit.add_row(row)
    audit.finish()
    return CheckReport([f for *_, f in sorted(audit.findings, key=lambda t: t[:3])], fixed)


# Columns of a run the rules and `run_job` read.
_COLUMNS = ("id", "name", "kind", "date", "args", "args_raw", "args_status", "args_error", "notes", "links",
            "status", "error", "host", "pid", "heartbeat_at", "lb_miou", "val_miou", "lb_val_miou", "parent_id",
            "job", "job_hash", "command", "table_index")
_BATCH = 1000


def _rows(session: Session, views: JobViews, *, cells: bool) -> Iterator[_Row]:
    """Every run in ledger order as a `_Row`, read a batch at a time."""
    parent = aliased(Run)
    columns = [getattr(Run, c) for c in _COLUMNS] + [parent.id.label("parent_found")]
    if cells:
        columns.append(Run.cells)
    query = select(*columns).outerjoin(parent, Run.parent_id == parent.id).order_by(Run.position, Run.id)
    # Through the session's connection, not the ORM: the rows are plain, and the ORM's
    # loading machinery would cost more than the rules.
    for index, run in enumerate(session.connection().execute(query.execution_options(yield_per=_BATCH)), start=1):
        args = dict(run.args) if run.args is not None else None
        # A reproduction carries its original's arguments (plus overrides) under another
        # name: the rules about names, notes and run_name would only repeat the original's.
        yield _Row(run, index, args, views if run.kind == "logged" and args is not None else None)


class _Audit:
    """The rules, fed one row at a time in ledger order."""

    def __init__(self, session: Session, tol: float, fixed: list[str]):
        self.session, self.tol, self.fixed = session, tol, set(fixed)
        self.views = JobViews()
        self.findings: list[tuple[int, int, int, Finding]] = []
        self.ids = array("q")  # row number - 1 -> run id (8 bytes a run)
        self.previous: Optional[_Row] = None  # the logged row before
        self.score_headers = _score_headers(session)
        # run names: the logged rows' recorded run_names, as hashes; the rows that record another's
        self.recorded = _Hashes()
        self.mismatches: list[tuple[int, str, int]] = []  # row, recorded run_name, finding order
        self.links = _Hashes()
        # reproductions: the runs some finished reproduction reproduces, and those reproductions
        query = (select(Run.parent_id).where(Run.kind == "reproduction", Run.parent_id.is_not(None),
                                             or_(Run.status.is_(None), Run.status == "finished")).distinct())
        self.wanted = set(session.scalars(query))
        # id -> its row number, name, scores (METRICS) and experiment key
        self.originals: dict[int, tuple[int, str, tuple[Optional[float], ...], Optional[str]]] = {}
        self.reproductions: list[tuple[_Row, int, Optional[str]]] = []  # row, original id, experiment key

    def add(self, row: _Row, phase: int, severity: str, code: str, message: str) -> None:
        finding = Finding(row.run.name, row.index, severity, code, message)
        self.findings.append((row.index, phase, len(self.findings), finding))

    def add_row(self, row: _Row) -> None:
        run = row.run
        self.ids.append(run.id)
        if run.kind == "logged":
            add = self._adder(_NAMES_AND_NOTES)
            if row.args is not None:
                _check_name(row, add)
            _check_notes(row, self.previous, add)
            self.previous = row
            self._note_run_name(row)
        header = _table_header(self.score_headers, run.table_index)
        if header is not None:
            _check_score(row, header, self._adder(_SCORES))
        for url in dict.fromkeys(run.links or []):
            self.links.add(_link_key(url), row.index)
        if run.id in self.wanted:
            key = experiment_key(self.views.of(run).job)
            self.originals[run.id] = (row.index, run.name, _scores_of(run), key)
        if run.kind == "reproduction" and run.parent_found is not None and run.status in (None, "finished"):
            light = _Row(_Scores(run.name, *_scores_of(run)), row.index, None)
            self.reproductions.append((light, run.parent_id, experiment_key(self.views.of(run).job)))
        _check_stale(row, self.fixed, self._adder(_STALE))

    def _adder(self, phase: int) -> Any:
        return lambda row, severity, code, message: self.add(row, phase, severity, code, message)

    def _note_run_name(self, row: _Row) -> None:
        recorded = (row.args or {}).get("run_name")
        if not isinstance(recorded, str):
            return
        self.recorded.add(recorded, row.index)
        if recorded != row.run.name:
            self.mismatches.append((row.index, recorded, len(self.findings)))
            self.add(row, _RUN_NAME_MISMATCH, "warning", "run-name-mismatch", "")  # its text once all names are read

    def finish(self) -> None:
        self._finish_run_names()
        self._finish_links()
        self._finish_reproductions()

    def _fetch(self, rows: Iterable[int], *columns: Any) -> dict[int, Any]:
        """Some columns of these rows (by row number), read again."""
        by_id = {self.ids[row - 1]: row for row in rows}
        out = {}
        ids = list(by_id)
        for start in range(0, len(ids), 500):
            query = select(Run.id, *columns).where(Run.id.in_(ids[start:start + 500]))
            for found in self.session.execute(query):
                out[by_id[found.id]] = found
        return out

    def _logged_rows_named(self, names: set[str]) -> dict[str, int]:
        """The row numbers of the logged runs with these names."""
        ids: dict[int, str] = {}
        wanted = sorted(names)
        for start in range(0, len(wanted), 500):
            query = select(Run.id, Run.name).where(Run.kind == "logged", Run.name.in_(wanted[start:start + 500]))
            for run_id, name in self.session.execute(query):
                ids[run_id] = name
        if not ids:
            return {}
        return {ids[run_id]: row for row, run_id in enumerate(self.ids, start=1) if run_id in ids}

    def _finish_run_names(self) -> None:
        by_name = self._logged_rows_named({recorded for _, recorded, _ in self.mismatches})
        for row, recorded, order in self.mismatches:
            other = by_name.get(recorded)
            where = f" (it is the name of row {other} ({recorded}))" if other is not None else ""
            index, phase, _, finding = self.findings[order]
            message = f"the arguments record run_name={recorded!r}, not the row's name{where}"
            self.findings[order] = (index, phase, order, Finding(finding.run, finding.row, finding.severity,
                                                                 finding.code, message))
        groups: dict[str, list[_Row]] = {}
        shared = self._fetch(self.recorded.repeated_rows(), Run.name, Run.args)
        for row in sorted(shared):
            found = shared[row]
            groups.setdefault(found.args["run_name"], []).append(_Row(found, row, None))
        for recorded, group in groups.items():
            if len(group) < 2:
                continue
            owner = next((r for r in group if r.run.name == recorded), group[0])
            for row in group:
                if row is owner:
                    continue
                others = ", ".join(r.label for r in group if r is not row)
                self.add(row, _RUN_NAME_SHARED, "warning", "run-name-shared",
                         f"run_name={recorded!r} is also the run_name of {others}: their W&B runs share one name")

    def _finish_links(self) -> None:
        candidates = self._fetch(self.links.repeated_rows(), Run.name, Run.links)
        first: dict[str, _Row] = {}
        for index in sorted(candidates):
            row = _Row(candidates[index], index, None)
            for url in dict.fromkeys(row.run.links or []):
                key = link_key(url)
                if key in first and first[key] is not row:
                    self.add(row, _LINKS, "error", "link-shared", f"the W&B link {url} is also on {first[key].label}")
                first.setdefault(key, row)

    def _finish_reproductions(self) -> None:
        tol = self.tol
        siblings: dict[tuple[int, Optional[str]], list[_Row]] = {}
        for row, original_id, key in self.reproductions:
            run = row.run
            index, name, original, original_key = self.originals[original_id]
            if run.val_miou is not None:
                siblings.setdefault((original_id, key), []).append(row)
            if key is None or key != original_key:
                continue  # another experiment (overrides): its scores need not agree
            for (column, label), a, b in zip(METRICS, original, _scores_of(run)):
                if a is not None and b is not None and abs(b - a) > tol + 1e-12:
                    self.add(row, _REPRODUCTION, "warning", "reproduction-disagrees",
                             f"{label} {b:.4f} differs by {b - a:+.4f} from the original's {a:.4f} "
                             f"(row {index} ({name})), more than the tolerance {tol:g}")
        for group in siblings.values():
            if len(group) < 2:
                continue
            values = [r.run.val_miou for r in group]
            if max(values) - min(values) <= tol + 1e-12:
                continue
            mean = statistics.fmean(values)
            worst = max(reversed(group), key=lambda r: abs(r.run.val_miou - mean))
            self.add(worst, _REPEATS, "warning", "repeats-disagree",
                     f"val mIoU {worst.run.val_miou:.4f}; its {len(group)} sibling repeats range "
                     f"{min(values):.4f}..{max(values):.4f} (mean {mean:.4f}), wider than the tolerance {tol:g}: "
                     + ", ".join(r.run.name for r in group))


@dataclass(frozen=True)
class _Scores:
    name: str
    lb_miou: Optional[float]
    val_miou: Optional[float]
    lb_val_miou: Optional[float]


# A URL that `link_key` only cuts and lower-cases: scheme://host, a path, then a query or
# fragment it drops; nothing it would strip, split differently or refuse (spaces, controls,
# brackets, a host that is not ASCII).
_SIMPLE_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([A-Za-z0-9._~%!$&'()*+,;=:@-]+)((?:/[^?#\x00-\x20\x7f]*)?)"
                         r"(?:[?#][^\x00-\x20\x7f]*)?")


def _link_key(url: str) -> str:
    """`link_key(url)`, without urllib for the common case (it is most of the links rule's time)."""
    match = _SIMPLE_URL.fullmatch(url)
    if match is None:
        return link_key(url)
    scheme, host, path = match.groups()
    return f"{scheme.lower()}://{host.lower()}{path.rstrip('/')}"


def _scores_of(run: Any) -> tuple[Optional[float], ...]:
    return tuple(getattr(run, column) for column, _ in METRICS)


class _Hashes:
    """Values seen on the rows, in bounded memory: a 64-bit hash of each and its row number.

    Rules that compare rows with each other ask which rows may share a value; those few
    are then read again and compared exactly (a hash can collide, a value cannot).
    """

    def __init__(self) -> None:
        self.hashes, self.rows = array("q"), array("i")

    def add(self, value: str, row: int) -> None:
        self.hashes.append(hash(value))
        self.rows.append(row)

    def repeated_rows(self) -> set[int]:
        """The rows whose value's hash was seen more than once."""
        twice: set[int] = set()
        # A quarter of the hashes sorted at a time: sorting makes an int object of each.
        for part in range(4):
            ordered = sorted(value for value in self.hashes if value & 3 == part)
            twice.update(a for a, b in zip(ordered, islice(ordered, 1, None)) if a == b)
        return self.rows_with(twice)

    def rows_with(self, hashes: set[int]) -> set[int]:
        if not hashes:
            return set()
        return {row for value, row in zip(self.hashes, self.rows) if value in hashes}


def _check_stale(row: _Row, fixed: set[str], add: Any) -> None:
    if row.run.name in fixed:
        add(row, "info", "stale-run-fixed", f"its trainer was gone; now marked interrupted ({row.run.error})")
        return
    reason = stale_reason(row.run)
    if reason is not None:
        add(row, "warning", "stale-run",
            f"marked running, but {reason}; `ledger check --fix` marks it interrupted, "
            f"`ledger reproduce {row.run.name} --resume` takes it over")


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
    # Each name rule needs a word first, looked for as a plain substring: a regex search per
    # rule and row is most of the time these rules take.
    criteria = _criteria(args) if "focal" in name and _NAME_FOCAL.search(name) else None
    if criteria and not any("focal" in c for c in criteria):
        add(row, "error", "name-vs-arguments",
            f"the name says focal, but the arguments record {_shown(args, _LOSS_ARGS)}: no focal loss")
    if "cutmix" in name and _NAME_CUTMIX.search(name) and args.get("cutmix") is not True:
        said = f"cutmix={args['cutmix']!r}" if "cutmix" in args else "no cutmix (default False)"
        add(row, "error", "name-vs-arguments", f"the name says cutmix, but the arguments record {said}")
    if "_loss" in name and _NAME_MULTI.search(name) and not _multi(args):
        add(row, "error", "name-vs-arguments",
            f"the name says a multi loss, but the arguments record {_shown(args, _LOSS_ARGS) or 'a single loss'}")
    # The job only where the name claims something of it: resolving it is the costly part.
    match = "max" in name and _NAME_TMAX.search(name)
    t_max = _job_value(row, "t_max") if match else None
    if match and t_max is not None and int(match.group(1)) != t_max:
        add(row, "warning", "name-vs-job",
            f"the name says T_max {match.group(1)}, but the job's T_max is {t_max}{_source_note(row, 't_max')}")
    match = "gamma" in name and _NAME_GAMMA.search(name)
    if not match:
        return
    gamma = _job_value(row, "focal_gamma")
    uses_focal = "focal" in (_job_value(row, "criterion1"), _job_value(row, "criterion2"))
    if gamma is not None and uses_focal and not _close(match.group(1).replace("p", "."), gamma):
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
    lowered = notes.lower()
    if not ("max" in lowered or "gamma" in lowered or "(" in notes):
        return  # no T_max, gamma or augmentation below: the job need not be resolved
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
    # Each claim needs a word first; a plain substring of the lower-cased text finds it
    # (of the letters of these words, none has a case-insensitive twin outside ASCII that
    # lower() would miss, as 's' and 'i' have).
    lowered, name = notes.lower(), row.run.name.lower()
    smoothing_noted = "mooth" in lowered and _NOTE_SMOOTHING.search(notes)
    smoothing_named = "label_smooth" in name and _NAME_SMOOTHING.search(name)
    single = ("dual" in lowered or "ngle" in lowered) and _NOTE_SINGLE.search(notes)
    mixed = ("*" in notes or "비율" in notes or "혼용" in notes) and _NOTE_MULTI.search(notes)
    if not (smoothing_noted or smoothing_named or single or mixed):
        return
    criteria = _criteria(args)
    denied: list[str] = []
    from_notes = False
    smoothing = "label_smoothing" in criteria or any("smooth" in c for c in criteria)
    if smoothing_noted and not smoothing:
        denied.append(f"the notes say label smoothing ({smoothing_noted.group(0)!r})")
        from_notes = True
    if smoothing_named and not smoothing:
        denied.append(f"the name says label smoothing ({smoothing_named.group(1)!r})")
    if single and _multi(args):
        denied.append(f"the notes say a single loss ({single.group(0)!r})")
        from_notes = True
    if mixed and not _multi(args) and not single:
        denied.append(f"the notes say a mix of two losses ({mixed.group(0)!r})")
        from_notes = True
    if not denied:
        return
    message = f"{'; '.join(denied)}; the arguments record {_shown(args, _LOSS_ARGS)}"
    if previous is not None and previous.args is not None and same(
            {k: v for k, v in args.items() if k != "run_name"},
            {k: v for k, v in previous.args.items() if k != "run_name"}):
        message += f" (the arguments are the same as those of {previous.label}: likely copied from it)"
    add(row, "warning", "notes-vs-arguments" if from_notes else "name-vs-arguments", message)


def _score_headers(session: Session) -> list[Optional[str]]:
    """For each table of the log, the column that holds the LB score, or None where the
    table keeps its scores in the notes."""
    from ledger.store.export import document_tables

    document = session.scalars(select(Document)).first()
    if document is None:
        return []
    headers = []
    for layout in document_tables(document):
        roles = roles_for(list(layout["headers"]), layout.get("name_column"))
        headers.append(layout["headers"][roles.index("lb")] if "lb" in roles else None)
    return headers


def _table_header(headers: list[Optional[str]], table_index: Optional[int]) -> Optional[str]:
    """The LB column of a row's table; rows merged from elsewhere are in the last table."""
    if not headers:
        return None
    return headers[table_index] if table_index is not None and 0 <= table_index < len(headers) else headers[-1]


def _check_score(row: _Row, header: str, add: Any) -> None:
    if row.run.cells is None:
        return
    column = parse_lb(unescape_cell(row.run.cells.get(header, "")))
    noted = parse_lb(row.run.notes)
    if noted is None:
        return
    if column is None:
        add(row, "warning", "score-missing",
            f"the notes state an LB score of {noted:g}, but the {header!r} column is empty")
    elif not _close(column, noted):
        add(row, "error", "score-mismatch",
            f"the notes state an LB score of {noted:g}, but the {header!r} column says {column:g}")
