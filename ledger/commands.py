"""The command recipe: record any command as a row, reproduce it at its commit, attach one.

`record_command` runs `ledger run -- CMD...`: it appends a row carrying the argv, the
working folder relative to the repository root, the git commit and the full
uncommitted change, the environment, and the arguments read from the argv; runs the
command with `$LEDGER_METRICS_FILE` set (the script reports through `ledger.log`);
and records the metrics, the exit code, the output log and every attempt.

`reproduce_command` rebuilds the row's tree in a fresh git worktree (commit plus
change), runs the same argv there (with `--set` rewriting arguments), appends the result
as a reproduction linked to the original and says whether the metrics agree.

`attach` gives a row that was imported from a log the command that trained it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ledger.analysis import DEFAULT_TOL
from ledger.analysis.compare import final_values
from ledger.core.args import render_arguments
from ledger.core.argv import parse_argv, set_argument
from ledger.core.cells import check_name
from ledger.core.clock import utcnow
from ledger.core.errors import LedgerError, RunInterrupted
from ledger.store.attempts import begin_attempt, end_attempt
from ledger.store.db import transaction, write_retrying
from ledger.store.liveness import reap_stale, this_host
from ledger.store.models import Metric, Run
from ledger.runs import unique_name, writable_runs_dir
from ledger.store.sql_reader import get_run
from reproduce import command as cmd
from reproduce.command import CommandError, GitState

METRICS_FILE = "metrics.jsonl"
OUTPUT_LOG = "output.log"
Say = Any


@dataclass(frozen=True)
class CommandRequest:
    """What `ledger run -- CMD` was asked for."""

    argv: list[str]
    name: Optional[str] = None
    cwd: Optional[Path] = None  # default: the current folder
    env_keys: tuple[str, ...] = ()  # environment variables whose values are recorded
    runs_dir: Optional[Path] = None
    echo: bool = True  # stream the command's output to this terminal
    tol: float = DEFAULT_TOL
    from_run: Optional[str] = None  # `--from RUN`: the row this one follows on, recorded


def with_overrides(argv: Sequence[str], overrides: Optional[Mapping[str, Any]]) -> list[str]:
    """`argv` with each `--set key=value` applied (`ledger.core.argv.set_argument`)."""
    out = list(argv)
    for key, value in (overrides or {}).items():
        try:
            out = set_argument(out, key, str(value))
        except ValueError as exc:
            raise LedgerError(str(exc)) from None
    return out


def has_command(engine: Engine, name: str) -> bool:
    """Whether the row `name` exists and carries a command (the command recipe applies)."""
    with transaction(engine, write=False) as session:
        return session.scalar(select(Run.id).where(Run.name == name, Run.command.is_not(None))) is not None


def planned_command(engine: Engine, name: str, *, overrides: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
    """What `ledger reproduce NAME` would run for a command row; runs nothing."""
    with transaction(engine, write=False) as session:
        command = dict(get_run(session, name).command or {})
    argv = with_overrides(command.get("argv") or [], overrides)
    git = command.get("git") or {}
    where = f"at {git['commit'][:12]}{' plus its uncommitted change' if git.get('dirty') else ''} of {git['root']}" \
        if git else "(not recorded in a git repository: it cannot be rebuilt)"
    return {"name": name, "recipe": "command", "argv": argv, "cwd": command.get("cwd"), "commit": git.get("commit"),
            "dirty": git.get("dirty"), "line": f"{name}: {shlex.join(argv)} in {command.get('cwd')} {where}"}


def command_hash(command: Mapping[str, Any]) -> str:
    """What makes two command rows the same job: argv, folder, commit and change."""
    git = command.get("git") or {}
    identity = {"argv": command.get("argv"), "cwd": command.get("cwd"), "commit": git.get("commit"),
                "diff": hashlib.sha256((git.get("diff") or "").encode()).hexdigest(),
                "untracked": sorted((git.get("untracked") or {}).items())}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _record_of(argv: Sequence[str], cwd: Path, env_keys: Sequence[str]) -> dict[str, Any]:
    try:
        state = cmd.git_state(cwd)
    except CommandError as exc:
        raise LedgerError(str(exc)) from None
    if state is None:
        where = str(cwd)
    else:
        where = os.path.relpath(cwd, state.root)
    return {"argv": list(argv), "cwd": where, "git": state.to_json() if state else None, "env_keys": list(env_keys)}


def _default_name(session: Session, argv: Sequence[str]) -> str:
    from ledger.core.argv import script_start

    start = script_start(argv)
    script = argv[start - 1] if 0 < start <= len(argv) else argv[0]
    base = Path(script).stem or "run"
    taken = set(session.scalars(select(Run.name).where(Run.name.like(f"{base}_%"))))
    n = 1
    while f"{base}_{n}" in taken:
        n += 1
    return f"{base}_{n}"


def _append(engine: Engine, *, name: Optional[str], argv: Sequence[str], command: dict[str, Any],
            environment: dict[str, Any], runs_root: Path, parent: Optional[str] = None) -> tuple[int, str, Path]:
    args = parse_argv(argv)

    def work(session: Session) -> tuple[int, str, Path]:
        reap_stale(session)
        parent_row = get_run(session, parent) if parent else None
        chosen = check_name(name, "--name") if name is not None else (
            unique_name(session, parent_row.name, "_repro") if parent_row else _default_name(session, argv))
        if session.scalar(select(Run.id).where(Run.name == chosen)) is not None:
            raise LedgerError(f"a run named {chosen!r} already exists; pick another --name")
        position = (session.scalar(select(Run.position).order_by(Run.position.desc()).limit(1)) or 0) + 1
        run_dir = (runs_root / chosen).resolve()
        model = args.get("model") or args.get("arch") or (parent_row.model if parent_row else None)
        git = command.get("git") or {}
        at = f" at {git['commit'][:12]}{' with uncommitted changes' if git.get('dirty') else ''}" if git else ""
        notes = (f"reproduction of {parent_row.name}: `{shlex.join(argv)}`{at}" if parent_row
                 else f"`{shlex.join(argv)}`{at}")
        run = Run(name=chosen, position=position, date=dt.date.today().isoformat(),
                  model=str(model) if model is not None else None, args=args or None,
                  args_raw=render_arguments(args) if args else None, args_status="ok" if args else "none",
                  links=[], notes=notes, kind="reproduction" if parent_row else "logged",
                  parent_id=parent_row.id if parent_row else None, status="queued",
                  command=command | {"run_dir": str(run_dir)}, job_hash=command_hash(command), environment=environment)
        session.add(run)
        session.flush()
        return run.id, run.name, run_dir

    return write_retrying(engine, work)


def record_command(engine: Engine, request: CommandRequest, *, say: Optional[Say] = None) -> dict[str, Any]:
    """Append a row for `request.argv`, run it, record what it reported; returns its summary.

    Raises:
        LedgerError: the command cannot be recorded (before any row), or it failed (the row
            is then `failed` with its exit code). `RunInterrupted` on Ctrl-C or SIGTERM.
    """
    if not request.argv:
        raise LedgerError("give the command after --, e.g. `ledger run -- python train.py --lr 1e-4`")
    cwd = (request.cwd or Path.cwd()).resolve()
    command = _record_of(request.argv, cwd, request.env_keys)
    if request.from_run:
        with transaction(engine, write=False) as session:
            command["from"] = get_run(session, request.from_run).name
    runs_root = writable_runs_dir(request.runs_dir)
    environment = cmd.environment(request.env_keys)
    run_id, name, run_dir = _append(engine, name=request.name, argv=request.argv, command=command,
                                    environment=environment, runs_root=runs_root)
    if say is not None:
        say(f"running {shlex.join(request.argv)} as {name}; output in {run_dir / OUTPUT_LOG}")
    return _execute(engine, run_id, name, request.argv, cwd, run_dir, echo=request.echo, tol=request.tol)


def _execute(engine: Engine, run_id: int, name: str, argv: Sequence[str], cwd: Path, run_dir: Path, *,
             echo: bool, tol: float, extra_env: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
    from ledger.runs import Heartbeat

    run_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = run_dir / METRICS_FILE
    metrics_path.unlink(missing_ok=True)
    with transaction(engine) as session:
        run = session.get(Run, run_id)
        run.status, run.error = "running", None
        run.host, run.pid, run.heartbeat_at = this_host(), os.getpid(), utcnow()
        begin_attempt(run, host=run.host, pid=run.pid, from_epoch=1)
    # A script that logs to W&B writes its run under the row's folder, with an id the ledger knows.
    wandb_id = "ldg" + secrets.token_hex(5)
    env = {"LEDGER_METRICS_FILE": str(metrics_path), "LEDGER_RUN_NAME": name, "LEDGER_RUN_DIR": str(run_dir),
           "WANDB_RUN_ID": wandb_id, "WANDB_DIR": str(run_dir), **(extra_env or {})}
    with transaction(engine) as session:
        run = session.get(Run, run_id)
        run.command = dict(run.command or {}) | {"wandb_run_id": wandb_id}
    outcome = None
    try:
        with Heartbeat(engine, run_id):
            outcome = cmd.run_command(argv, cwd=cwd, env=env, log_path=run_dir / OUTPUT_LOG, echo=echo)
    except CommandError as exc:
        _finish(engine, run_id, "failed", metrics_path, error=str(exc))
        raise LedgerError(f"{name} failed: {exc} (status recorded as failed)") from None
    except BaseException as exc:
        _finish(engine, run_id, "failed", metrics_path, error=f"{exc.__class__.__name__}: {exc}")
        raise
    if outcome.interrupted:
        _finish(engine, run_id, "interrupted", metrics_path, exit_code=outcome.exit_code,
                error=f"interrupted (exit code {outcome.exit_code})")
        raise RunInterrupted(name)
    status = "finished" if outcome.exit_code == 0 else "failed"
    _finish(engine, run_id, status, metrics_path, exit_code=outcome.exit_code,
            error=None if status == "finished" else f"exit code {outcome.exit_code}; see {run_dir / OUTPUT_LOG}")
    with transaction(engine, write=False) as session:
        run = session.get(Run, run_id)
        summary = command_summary(session, run, tol=tol)
    if status == "failed":
        raise LedgerError(f"{name} failed with exit code {outcome.exit_code} (status recorded as failed); its output "
                          f"is in {run_dir / OUTPUT_LOG}")
    return summary


def _finish(engine: Engine, run_id: int, status: str, metrics_path: Path, *, exit_code: Optional[int] = None,
            error: Optional[str] = None) -> None:
    records = cmd.read_metrics(metrics_path)
    with transaction(engine, write=False) as session:
        command = dict(session.get(Run, run_id).command or {})
    wandb_run = _wandb_run(metrics_path.parent, command.get("wandb_run_id"))
    if wandb_run is not None:
        records = _merge(records, wandb_run)
    with transaction(engine) as session:
        run = session.get(Run, run_id)
        if wandb_run is not None:
            run.links = [wandb_run["url"] or wandb_run["folder"]]
            run.command = dict(run.command or {}) | {"wandb": {k: wandb_run[k] for k in (
                "run_id", "project", "entity", "url", "folder", "offline")}}
        _store_metrics(session, run, records)
        run.status, run.error = status, error
        run.command = dict(run.command or {}) | {"exit_code": exit_code}
        end_attempt(run, status)


def _wandb_run(run_dir: Path, run_id: Optional[str]) -> Optional[dict[str, Any]]:
    """The W&B run the command wrote under its folder, read from its files; None if none."""
    from reproduce.wandb_files import WandbFileError, find_run_folder, read_run_folder

    folder = find_run_folder(run_dir, run_id) if run_id else None
    if folder is None:
        return None
    try:
        return read_run_folder(folder)
    except (WandbFileError, OSError):
        return None


def _merge(records: list[dict[str, Any]], wandb_run: dict[str, Any]) -> list[dict[str, Any]]:
    """The script's `ledger.log` records, then W&B's history and summary for what they lack:
    a summary value W&B has no history of is the metric's value at the last step."""
    from reproduce.wandb_files import metric_points

    have = {(k, r.get("step")) for r in records for k in r if k != "step"}
    merged = list(records)
    points = metric_points(wandb_run["history"])
    for point in points:
        extra = {k: v for k, v in point.items() if k != "step" and (k, point["step"]) not in have}
        if extra:
            merged.append({"step": point["step"], **extra})
    names = {k for r in merged for k in r if k != "step"}
    last = max((r["step"] for r in merged if isinstance(r.get("step"), int)), default=0)
    final = {k: float(v) for k, v in wandb_run["summary"].items() if not k.startswith("_") and k not in names
             and isinstance(v, (int, float)) and not isinstance(v, bool)}
    if final:
        merged.append({"step": last, **final})
    return merged


def _store_metrics(session: Session, run: Run, records: list[dict[str, Any]]) -> None:
    points: dict[tuple[str, int], float] = {}
    for index, record in enumerate(records, start=1):
        step = record.get("step")
        step = int(step) if isinstance(step, (int, float)) and not isinstance(step, bool) else index
        for key, value in record.items():
            if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            points[(str(key)[:64], step)] = float(value)  # a step reported twice keeps its last value
    for metric in list(run.metrics):
        session.delete(metric)
    session.flush()
    for (name, step), value in sorted(points.items(), key=lambda p: (p[0][1], p[0][0])):
        run.metrics.append(Metric(name=name, step=step, epoch=None, value=value))
    miou = [value for (name, _), value in points.items() if name == "val_miou"]
    run.val_miou = max(miou) if miou else None


def agreement(run: Run, other: Run, tol: float) -> dict[str, Any]:
    """Whether two command rows' metrics agree: every shared metric's final value within `tol`,
    and whether the whole series are identical."""
    mine, theirs = final_values(run), final_values(other)
    shared = sorted(set(mine) & set(theirs))
    diffs = {k: abs(mine[k] - theirs[k]) for k in shared}
    series = lambda r: sorted((m.name, m.step, m.value) for m in r.metrics)  # noqa: E731
    return {"name": other.name, "shared": shared, "identical": bool(shared) and series(run) == series(other),
            "agrees": bool(shared) and all(d <= tol for d in diffs.values()),
            "max_abs_diff": max(diffs.values(), default=None), "only_in_one": sorted(set(mine) ^ set(theirs))}


def command_summary(session: Session, run: Run, *, tol: float = DEFAULT_TOL) -> dict[str, Any]:
    command = run.command or {}
    summary: dict[str, Any] = {
        "name": run.name, "status": run.status, "exit_code": command.get("exit_code"), "argv": command.get("argv"),
        "commit": (command.get("git") or {}).get("commit"), "dirty": (command.get("git") or {}).get("dirty"),
        "metrics": final_values(run), "duration_s": run.duration_s, "run_dir": command.get("run_dir"),
        "output_log": str(Path(command["run_dir"]) / OUTPUT_LOG) if command.get("run_dir") else None,
        "overrides": command.get("overrides") or {},
    }
    others = []
    if run.parent is not None and run.parent.metrics:
        others.append(run.parent)
    query = select(Run).where(Run.job_hash == run.job_hash, Run.id != run.id, Run.status == "finished",
                              Run.command.is_not(None))
    others += [r for r in session.scalars(query.order_by(Run.position)) if r not in others]
    summary["same_job"] = [agreement(run, other, tol) for other in others]
    return summary


def reproduce_command(engine: Engine, name: str, *, overrides: Optional[Mapping[str, str]] = None,
                      repo: Optional[Path] = None, keep_worktree: bool = False, strict_env: bool = False,
                      runs_dir: Optional[Path] = None, new_name: Optional[str] = None, echo: bool = True,
                      tol: float = DEFAULT_TOL, say: Optional[Say] = None) -> dict[str, Any]:
    """Rebuild the command row `name`'s tree at its commit with its change, run the same
    command there (arguments rewritten by `overrides`), append it as a reproduction.

    Raises:
        LedgerError: the row has no command or no git state, the commit or repository is
            missing, the change does not apply, `strict_env` and the environment differs,
            or the reproduction failed (its row is then `failed`).
    """
    with transaction(engine, write=False) as session:
        original = get_run(session, name)
        command = dict(original.command or {})
        recorded_env = dict(original.environment or {})
    if not command.get("argv"):
        raise LedgerError(f"{name} has no command; give it one with `ledger attach {name} --command ...`")
    if not command.get("git"):
        raise LedgerError(f"{name} was not recorded in a git repository: there is no commit to rebuild its code "
                          "from; run it again from inside one")
    state = GitState.from_json(command["git"])
    argv = with_overrides(command.get("argv") or [], overrides)
    current = cmd.environment(command.get("env_keys") or ())
    differences = cmd.environment_differences(recorded_env, current) if recorded_env else []
    if differences and strict_env:
        shown = "; ".join(differences[:5]) + (f"; and {len(differences) - 5} more" if len(differences) > 5 else "")
        raise LedgerError(f"--strict-env: the environment differs from {name}'s: {shown}")
    if say is not None:
        for line in differences[:20]:
            say(f"environment differs: {line}")
        if len(differences) > 20:
            say(f"environment differs: and {len(differences) - 20} more (ledger show {name} --json has them all)")
    runs_root = writable_runs_dir(runs_dir)
    new_command = {k: v for k, v in command.items() if k not in ("exit_code", "run_dir")}
    new_command["argv"] = argv
    if overrides:
        new_command["overrides"] = {k: str(v) for k, v in overrides.items()}
    repo_root = Path(repo).resolve() if repo else Path(state.root)
    # Checked before the row is appended: a missing commit leaves nothing behind.
    probe_dir = runs_root / f".worktree-check-{os.getpid()}"
    tree = _build_tree(state, probe_dir, repo_root)
    try:
        run_id, run_name, run_dir = _append(engine, name=new_name, argv=argv, command=new_command,
                                            environment=current, runs_root=runs_root, parent=name)
        worktree = run_dir / "worktree"
        run_dir.mkdir(parents=True, exist_ok=True)
        tree = cmd.move_worktree(tree, worktree, repo_root)
        cwd = worktree / command.get("cwd", ".")
        if say is not None:
            say(f"reproducing {name} as {run_name} in {worktree} at {state.commit[:12]}"
                f"{' with its uncommitted change' if state.dirty else ''}")
        summary = _execute(engine, run_id, run_name, argv, cwd, run_dir, echo=echo, tol=tol)
    finally:
        if tree.exists() and (not keep_worktree or tree == probe_dir):
            cmd.remove_worktree(tree, repo_root)
    summary["environment_differences"] = differences
    summary["worktree"] = str(tree) if keep_worktree else None
    return summary


def queue_command(engine: Engine, name: str, *, overrides: Optional[Mapping[str, str]] = None,
                  new_name: Optional[str] = None, runs_dir: Optional[Path] = None,
                  queue: Optional[dict[str, Any]] = None) -> str:
    """Queue a reproduction of the command row `name` for a worker; the new row's name.
    The commit must be in the repository now: a job that cannot be rebuilt is not queued."""
    with transaction(engine, write=False) as session:
        command = dict(get_run(session, name).command or {})
    if not command.get("git"):
        raise LedgerError(f"{name} was not recorded in a git repository: there is no commit to rebuild its code from")
    argv = with_overrides(command.get("argv") or [], overrides)
    state = GitState.from_json(command["git"])
    if not cmd.has_commit(Path(state.root), state.commit):
        raise LedgerError(f"commit {state.commit[:12]} is not in {state.root}: a worker could not rebuild it")
    new_command = {k: v for k, v in command.items() if k not in ("exit_code", "run_dir", "wandb", "wandb_run_id")}
    new_command["argv"] = argv
    if overrides:
        new_command["overrides"] = {k: str(v) for k, v in overrides.items()}
    _, row_name, _ = _append(engine, name=new_name, argv=argv, command=new_command, environment={},
                             runs_root=writable_runs_dir(runs_dir), parent=name)
    with transaction(engine) as session:
        row = session.scalar(select(Run).where(Run.name == row_name))
        row.queue = dict(queue or {}) | {"added_at": utcnow().isoformat(), "added_by": this_host()}
    return row_name


def run_queued(engine: Engine, run_id: int, *, echo: bool = True, say: Optional[Say] = None,
               tol: float = DEFAULT_TOL, data: Optional[str] = None) -> dict[str, Any]:
    """Run the claimed queued command row `run_id` (a worker's job) in a fresh worktree of
    its commit and change, from the start (a command has no checkpoint the ledger knows).
    The data folder (the worker's --data, else the one queued with it) reaches the script
    as $LEDGER_DATA."""
    with transaction(engine) as session:
        run = session.get(Run, run_id)
        command, name = dict(run.command or {}), run.name
        data = data or (run.queue or {}).get("data")
        run.environment = cmd.environment(command.get("env_keys") or ())
    run_dir = Path(command["run_dir"])
    state = GitState.from_json(command["git"])
    worktree = run_dir / "worktree"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        tree = _build_tree(state, worktree, Path(state.root))
    except LedgerError as exc:
        with transaction(engine) as session:
            row = session.get(Run, run_id)
            row.status, row.error = "failed", str(exc)
        raise
    try:
        return _execute(engine, run_id, name, command["argv"], tree / command.get("cwd", "."), run_dir, echo=echo,
                        tol=tol, extra_env={"LEDGER_DATA": str(Path(data).expanduser().resolve())} if data else None)
    finally:
        cmd.remove_worktree(tree, Path(state.root))


def _build_tree(state: GitState, into: Path, repo: Path) -> Path:
    # A worktree left by an attempt whose process died is removed, and git's record of it.
    cmd.remove_worktree(into, repo)
    try:
        return cmd.worktree(state, into, repo)
    except CommandError as exc:
        raise LedgerError(str(exc)) from None


def expand_template(template: str, args: Mapping[str, Any]) -> list[str]:
    """`python train.py {args}` with `{args}` replaced by the row's arguments as `--key value`."""
    words = []
    for word in shlex.split(template):
        if word == "{args}":
            for key, value in args.items():
                words += [f"--{key}", value if isinstance(value, str) else json.dumps(value) if value is None
                          else str(value)]
        else:
            words.append(word)
    return words


def attach(engine: Engine, name: str, *, template: str, commit: Optional[str] = None,
           repo: Optional[Path] = None, cwd: str = ".") -> dict[str, Any]:
    """Give the row `name` the command that trained it, at `commit` of `repo` (default: the
    current repository's HEAD), so that `ledger reproduce` can run it again.

    Raises:
        LedgerError: the row already has a command, the repository or the commit is not
            there, or the template is empty.
    """
    root = cmd.repository_root((repo or Path.cwd()).resolve())
    if root is None:
        raise LedgerError(f"{repo or Path.cwd()} is not in a git repository; pass --repo PATH")
    rev = commit or "HEAD"
    import subprocess

    out = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "-q", f"{rev}^{{commit}}"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise LedgerError(f"commit {rev} is not in {root}; fetch it, or pass --repo PATH to a clone that has it")
    full = out.stdout.strip()
    remote = subprocess.run(["git", "-C", str(root), "config", "--get", "remote.origin.url"], capture_output=True,
                            text=True).stdout.strip() or None

    def work(session: Session) -> dict[str, Any]:
        run = get_run(session, name, for_update=True)
        if run.command:
            raise LedgerError(f"{name} already has a command: {shlex.join(run.command.get('argv') or [])}")
        argv = expand_template(template, run.args or {})
        if not argv:
            raise LedgerError("--command is empty")
        state = GitState(root=str(root), commit=full, branch=None, remote=remote, dirty=False)
        run.command = {"argv": argv, "cwd": cwd, "git": state.to_json(), "env_keys": [], "attached": True}
        run.job_hash = command_hash(run.command)
        return {"name": run.name, "argv": argv, "commit": full, "repo": str(root)}

    return write_retrying(engine, work)
