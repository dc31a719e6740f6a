"""A run's job as the analyses compare it, and the small rules they share.

A run ledger started has its stored job (`ledger.store.jobrecord.JobRecord`); a logged row
is resolved from its recorded arguments, without overrides (`reproduce.resolve`, pure Python).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Optional

from ledger.store.jobrecord import JobRecord, other_family, row_input
from ledger.store.models import Run
from reproduce.codestate import NOTE_FACTS, code_state_for
from reproduce.job import RUNTIME_FIELDS
from reproduce.resolve import ResolveError, resolve

# (column, label) of the scores compare and history show.
METRICS = (("lb_miou", "LB mIoU"), ("val_miou", "val mIoU"), ("lb_val_miou", "val mIoU (LB metric)"))
# Fields that label a job rather than define it: left out of diffs unless asked for.
LABEL_FIELDS = RUNTIME_FIELDS | {"code_state"}


@dataclass(frozen=True)
class RunJob:
    """A run's job as plain data: the stored one, or its row resolved without overrides."""

    job: Optional[dict[str, Any]]
    sources: dict[str, str]
    hash: Optional[str]
    error: Optional[str] = None
    overridden: tuple[str, ...] = ()
    recorded_by: dict[str, str] = field(default_factory=dict)  # field -> the argument that set it
    # A command row's job is its command: argv, folder, commit and change (`command_view`).
    command: Optional[dict[str, Any]] = None


def command_view(command: dict[str, Any]) -> dict[str, Any]:
    """What defines a command row's job, as comparable text: the command line, the folder,
    the commit and the uncommitted change (by its hash)."""
    import shlex

    git = command.get("git") or {}
    change = "none"
    if git.get("dirty"):
        digest = hashlib.sha256(json.dumps([git.get("diff") or "", sorted((git.get("untracked") or {}).items())])
                                .encode()).hexdigest()[:12]
        change = f"{digest} ({len(git.get('untracked') or {})} untracked files)"
    return {"command": shlex.join(command.get("argv") or []), "cwd": command.get("cwd"),
            "commit": git.get("commit") or "not in a git repository", "change": change}


def run_job(run: Run) -> RunJob:
    if getattr(run, "command", None):
        # Never resolved as the seed's code family: its own command is what it ran.
        return RunJob(None, {}, run.job_hash, command=command_view(run.command))
    record = JobRecord.of(run)
    if record is not None:
        sources = record.sources()
        return RunJob(dict(record.job), sources, run.job_hash or record.hash or None,
                      overridden=tuple(record.overridden()), recorded_by=_recorded_by(record.details(), sources))
    if run.kind == "reproduction":
        return RunJob(None, {}, run.job_hash, error="no job was recorded for this reproduction")
    family = other_family(run)
    if family is not None and run.args_status != "none":
        # Another code family's row: the seed's defaults would make up a job it never ran.
        return RunJob(None, {}, None, error=f"other code: {family.removeprefix('records its arguments ')}")
    try:
        resolved = resolve(row_input(run))
    except ResolveError as exc:
        return RunJob(None, {}, None, error=str(exc))
    sources = {f: p.source for f, p in resolved.provenance.items()}
    details = {f: p.detail for f, p in resolved.provenance.items()}
    return RunJob(resolved.job.to_dict(), sources, resolved.job.hash(), recorded_by=_recorded_by(details, sources))


# Stand-ins for a row's name and its recorded run_name while `JobViews` resolves the
# configuration many rows share.
_NAME = "ledger_stand_in_row_name"
_RUN_NAME = "ledger_stand_in_run_name"
# Names a stand-in can stand for: plain text that quotes and parses like the stand-in.
_PLAIN = re.compile(r"[A-Za-z0-9_.+-]+")


class JobViews:
    """`run_job` for the rows of one reading of the ledger, each configuration resolved once.

    Resolving a logged row from its arguments takes a third of a millisecond, most of
    `history` and `check` over a whole ledger. Rows that differ only in their name and
    the run_name they recorded (repeats, sweeps, a log's many runs of a few settings)
    resolve alike except for those two strings, and rows of the same code state alike
    whatever their date: so each configuration is resolved once, with stand-ins for the
    two names, and each row gets its own names put back. Rows whose name resolution
    looks up (the seed log's note facts), or whose names are not plain text, are resolved
    on their own. At most `size` configurations are kept.
    """

    def __init__(self, size: int = 4096):
        self.size = size
        self.memo: dict[tuple[Any, ...], tuple[RunJob, tuple[str, ...]]] = {}
        self.code_states: dict[Optional[str], str] = {}  # a row's date -> its code state's commit

    def of(self, run: Any) -> RunJob:
        """`run_job(run)`."""
        stand_in = None
        if not getattr(run, "command", None) and getattr(run, "job", None) is None and run.kind != "reproduction":
            stand_in = self._stand_in(run)
        if stand_in is None:
            return run_job(run)
        key, make_proxy, run_name = stand_in
        found = self.memo.get(key)
        if found is None:
            if len(self.memo) >= self.size:
                self.memo.clear()
            view = run_job(make_proxy())
            # The job fields that hold a stand-in, to put the names back in them alone.
            named = tuple(k for k, v in (view.job or {}).items()
                          if isinstance(v, str) and (_NAME in v or _RUN_NAME in v))
            found = self.memo[key] = (view, named)
        return _named(*found, run.name, run_name)

    def _stand_in(self, run: Any) -> Optional[tuple[tuple[Any, ...], Any, Optional[str]]]:
        """(configuration key, a maker of the run with stand-in names, its recorded run_name), or None."""
        name, args, raw = run.name, run.args, run.args_raw
        if not isinstance(name, str) or not _PLAIN.fullmatch(name) or name in NOTE_FACTS or _NAME in name:
            return None
        run_name = None
        if isinstance(args, dict) and "run_name" in args:
            run_name = args["run_name"]
            if not isinstance(run_name, str) or not _PLAIN.fullmatch(run_name) or _RUN_NAME in run_name:
                return None
            args = {**args, "run_name": _RUN_NAME}
            if raw is not None:
                raw = raw.replace(f"run_name={run_name!r}", f"run_name={_RUN_NAME!r}")
        if raw is not None and (name in raw or (run_name is not None and run_name in raw)):
            return None  # a name elsewhere in the cell: the stand-in would not stand for it
        config = _config_key(args)
        if config is None:
            return None
        key = (self._code_state(run.date), run.kind, run.args_status, run.args_error, config, raw)

        def make_proxy() -> Any:
            return SimpleNamespace(name=_NAME, date=run.date, args=args, args_status=run.args_status,
                                   args_error=run.args_error, args_raw=raw, kind=run.kind, command=None, job=None,
                                   job_hash=getattr(run, "job_hash", None))

        return key, make_proxy, run_name

    def _code_state(self, date: Optional[str]) -> str:
        state = self.code_states.get(date)
        if state is None:
            state = self.code_states[date] = code_state_for(date).commit
        return state


def _config_key(args: Any) -> Optional[str]:
    """A key for the arguments that tells apart all that resolution tells apart: their
    repr, which for JSON's types tells 1 from 1.0 from True, -0.0 from 0.0 and "1" from 1
    (keys in another order are only another key)."""
    if args is None or isinstance(args, dict):
        return repr(args)
    return None


def _named(view: RunJob, named: tuple[str, ...], name: str, run_name: Optional[str]) -> RunJob:
    def put(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        value = value.replace(_NAME, name)
        return value.replace(_RUN_NAME, run_name) if run_name is not None else value

    job = view.job
    if job is not None:
        job = dict(job)
        for key in named:
            job[key] = put(job[key])
    return RunJob(job, view.sources, view.hash, put(view.error), view.overridden, view.recorded_by, view.command)


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


def arguments_of(run: Run) -> Optional[dict[str, Any]]:
    """The recorded arguments; a reproduction without its own has its original's."""
    if run.args is not None:
        return dict(run.args)
    if run.kind == "reproduction" and run.parent is not None and run.parent.args is not None:
        return dict(run.parent.args)
    return None


def same(a: Any, b: Any) -> bool:
    # JSON text tells True from 1 and 20 from 20.0, which == does not.
    kind = type(a)
    if kind is type(b) and kind in _SCALARS:
        # The same answer without writing JSON (`history` asks it of every field of every
        # run): text, ints, bools and None by value, floats by repr (-0.0 is not 0.0 as text).
        return repr(a) == repr(b) if kind is float else a == b
    return json.dumps(a, sort_keys=True, default=repr) == json.dumps(b, sort_keys=True, default=repr)


_SCALARS = frozenset({str, int, bool, float, type(None)})


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key in sorted(data, key=str):
            out.update(flatten(data[key], f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


