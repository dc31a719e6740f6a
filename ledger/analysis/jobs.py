"""A run's job as the analyses compare it, and the small rules they share.

A run ledger started has its stored job (`ledger.store.jobrecord.JobRecord`); a logged row
is resolved from its recorded arguments, without overrides (`reproduce.resolve`, pure Python).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from ledger.store.jobrecord import JobRecord, other_family, row_input
from ledger.store.models import Run
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
    return json.dumps(a, sort_keys=True, default=repr) == json.dumps(b, sort_keys=True, default=repr)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key in sorted(data, key=str):
            out.update(flatten(data[key], f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


