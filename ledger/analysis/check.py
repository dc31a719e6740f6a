"""Audit the log: where a row's name, arguments, notes, scores, links and reproductions
contradict each other. Each finding names its row and says why."""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.analysis import DEFAULT_TOL
from ledger.analysis.jobs import METRICS, RunJob, experiment_key, run_job, same
from ledger.core.cells import link_key, parse_lb, roles_for
from ledger.core.errors import LedgerError
from ledger.core.markdown import unescape_cell
from ledger.store.liveness import reap_stale, stale_reason
from ledger.store.models import Document, Run
from ledger.store.sql_reader import list_runs


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


@dataclass
class _Row:
    run: Run
    index: int
    args: Optional[dict[str, Any]]
    view: Optional[RunJob] = None

    @property
    def label(self) -> str:
        return f"row {self.index} ({self.run.name})"


def check_ledger(session: Session, *, tol: float = DEFAULT_TOL, fix: bool = False) -> CheckReport:
    """Audit the log for contradictions between a row's name, arguments, notes, scores,
    links and reproductions. Each finding names its row and says why.

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
    rows = [_Row(run, index, dict(run.args) if run.args is not None else None)
            for index, run in enumerate(list_runs(session), start=1)]
    # A reproduction carries its original's arguments (plus overrides) under another name:
    # the rules about names, notes and run_name would only repeat the original's findings.
    logged = [r for r in rows if r.run.kind == "logged"]
    for row in logged:
        if row.args is not None:
            row.view = run_job(row.run)
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
    _check_stale(rows, fixed or [], add)
    return CheckReport([f for _, _, f in sorted(findings, key=lambda t: (t[0], t[1]))], fixed)


def _check_stale(rows: list[_Row], fixed: list[str], add: Any) -> None:
    for row in rows:
        if row.run.name in fixed:
            add(row, "info", "stale-run-fixed", f"its trainer was gone; now marked interrupted ({row.run.error})")
            continue
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
    if previous is not None and previous.args is not None and same(
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


def _check_links(rows: list[_Row], add: Any) -> None:
    first: dict[str, _Row] = {}
    for row in rows:
        for url in dict.fromkeys(row.run.links or []):
            key = link_key(url)
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
        mine = run_job(run)
        key = experiment_key(mine.job)
        if run.val_miou is not None:
            siblings.setdefault((original.id, key), []).append(row)
        if key is None or key != experiment_key(run_job(original).job):
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

