"""Training runs the ledger starts: a row -> a resolved job -> a run -> a new row.

What `ledger reproduce` and `ledger run --from` do, as functions a notebook can call:

    from ledger.runs import Request, start
    from ledger.store.db import open_ledger

    engine = open_ledger("runs.db")
    summary = start(engine, Request(run="DeepLabV3_cosinelr", data="demo"))
    summary["val_miou"], summary["name"]

`start` appends the row and trains it, `start_repeats` runs seed siblings, `resume`
continues an interrupted row, `plan` resolves the job without running anything. The
appended row moves queued -> running -> finished | failed | interrupted, each change in
its own short transaction, so that `ledger list` shows it while the job runs and a crash
or Ctrl-C never leaves it `running`. The training stack is imported only by the
functions that train.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import signal
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Optional

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from ledger.analysis.compare import same_job_runs
from ledger.core import config
from ledger.core.args import render_arguments
from ledger.core.cells import check_name
from ledger.core.clock import utcnow
from ledger.core.errors import LedgerError, RunInterrupted
from ledger.store.attempts import begin_attempt, end_attempt
from ledger.store.db import transaction, write_retrying
from ledger.store.jobrecord import JobRecord, other_family, row_input
from ledger.store.liveness import HEARTBEAT_S, live_description, reap_stale, stale_reason, this_host
from ledger.store.models import Metric, Run
from ledger.store.sql_reader import get_run
from reproduce.job import Job, ResolvedJob
from reproduce.profiles import DemoProfile, demo_profile
from reproduce.resolve import ResolveError, resolve, resolve_stored
from reproduce.tracking import choose_mode, destination

METRIC_NAMES = ("train_loss", "val_loss", "val_miou", "lb_val_miou", "lr")

# A progress display for one run: called with the number of epochs, it gives a context
# manager whose value takes on_epoch_start(epoch, batches), on_batch(loss, images) and
# on_epoch(result). `reproduce.progress.ProgressDisplay` is the terminal's.
Progress = Callable[[int], ContextManager[Any]]
Say = Callable[[str], None]


@dataclass
class Request:
    """What the user asked `ledger reproduce` (or `ledger run --from`, with `fork`) for."""

    run: str
    data: Optional[str] = None  # "demo" or a folder
    overrides: dict[str, Any] = field(default_factory=dict)
    weights: Optional[Path] = None
    no_pretrained: bool = False
    device: Optional[str] = None
    fast: bool = False
    name: Optional[str] = None
    wandb_mode: str = "auto"
    wandb_project: Optional[str] = None  # default: $WANDB_PROJECT, else `ledger`
    wandb_entity: Optional[str] = None  # default: $WANDB_ENTITY, else the user's own
    runs_dir: Optional[Path] = None
    seed: Optional[int] = None
    fork: bool = False  # `ledger run --from`: a new experiment, not a reproduction
    keep_last: bool = False  # keep last.pt (resume state, the size of several models) after the run finished


# ------------------------------------------------------------------ resolution


def resolve_request(session: Session, request: Request) -> tuple[Run, ResolvedJob]:
    """The original row and its resolved job with the request's profile and overrides."""
    original = get_run(session, request.run)
    if original.kind == "reproduction" and original.parent is not None and not request.fork:
        raise LedgerError(f"{original.name} is itself a reproduction of {original.parent.name}; reproduce that run, "
                          f"or continue this one with --resume")
    if request.name is not None:
        check_name(request.name, "--name")
        if session.scalar(select(Run.id).where(Run.name == request.name)) is not None:
            raise LedgerError(f"a run named {request.name!r} already exists; pick another --name")
    overrides = dict(request.overrides)
    if request.weights is not None:
        if not request.weights.is_file():
            raise LedgerError(f"--weights: no such file {request.weights}")
        from reproduce.hashing import file_sha256

        overrides["weights_path"] = str(request.weights.resolve())
        overrides["weights_sha256"] = file_sha256(request.weights)
    if request.no_pretrained:
        if request.weights is not None:
            raise LedgerError("--weights and --no-pretrained contradict each other")
        overrides["pretrained"] = False
    if request.device:
        overrides["device"] = request.device
    if request.fast:
        overrides["fast"] = True
    if request.seed is not None:
        overrides["seed"] = request.seed

    try:
        choose_mode(request.wandb_mode)
    except ValueError as exc:
        raise LedgerError(f"--wandb: {exc}") from None
    profile = profile_of(request.data)
    job_profile, label = (profile.job, profile.label) if profile else (None, "")
    record = JobRecord.of(original)
    try:
        if record is not None:
            resolved = resolve_stored(record.job, record.provenance, record.conflicts, overrides, profile=job_profile,
                                      profile_name=label)
        else:
            refuse_other_families(original)
            resolved = resolve(row_input(original), overrides, profile=job_profile, profile_name=label)
            check_model_column(original, resolved)
    except ResolveError as exc:
        raise LedgerError(str(exc)) from None
    except KeyError as exc:  # Job.from_dict on a stored job with a key this version does not know
        raise LedgerError(str(exc.args[0]) if exc.args else "a stored job has an unknown key") from None
    return original, resolved


def _way_out(name: str) -> str:
    return (f"if it was trained by a script of your own, give the row its command: `ledger attach {name} --command "
            "\"python train.py {args}\" --commit SHA --repo PATH`, then `ledger reproduce` runs that")


def refuse_other_families(original: Run) -> None:
    """A row the built-in rebuild (the seed log's code family) cannot stand for is refused,
    with the way out: a row whose arguments are not recorded in that code's form would get
    every field from that code's defaults, which is a different job, not a reproduction."""
    what = other_family(original)
    if what is None:
        return
    raise LedgerError(f"{original.name} {what}: the built-in rebuild of the seed's code family would fill every "
                      f"field with that code's defaults, which is not this run; {_way_out(original.name)}")


def check_model_column(original: Run, resolved: ResolvedJob) -> None:
    """The row's Model column names the model the job builds (unless `--set model=` says otherwise)."""
    column = (original.model or "").strip()
    if not column or resolved.provenance["model"].source == "override":
        return
    if column.lower() != str(resolved.job.model).lower():
        raise LedgerError(f"{original.name}'s Model column says {column!r} but its arguments name no such model: the "
                          f"built-in rebuild would train {resolved.job.model!r}, which is not this run; "
                          f"{_way_out(original.name)}")


def plan(engine: Engine, request: Request, *, check_data: bool = False) -> tuple[str, ResolvedJob]:
    """The name of the row `request` starts from and the job it would train; runs nothing.

    With `check_data` (what `--dry-run` asks for), the request's data folder is checked
    too, as `start` would check it: a dry run that passes means the run can start.
    """
    with transaction(engine, write=False) as session:
        original, resolved = resolve_request(session, request)
        name = original.name
    if check_data and request.data and profile_of(request.data) is None:
        check_data_dir(data_dir_for(request.data, resolved.job), resolved.job)
    return name, resolved


def check_data_dir(data_dir: Path, job: Job) -> None:
    """The folder holds the splits a job trains on, with images of the job's size; else a LedgerError."""
    from reproduce.data import DataError, validate_data_dir

    try:
        validate_data_dir(data_dir)
    except DataError as exc:
        raise LedgerError(str(exc)) from None
    import json

    with open(data_dir / "train.json", encoding="utf-8") as f:
        images = json.load(f).get("images") or []
    if images:
        size = (images[0].get("height"), images[0].get("width"))
        if size != (job.image_size, job.image_size):
            raise LedgerError(f"the job expects {job.image_size}x{job.image_size} images but {data_dir}/train.json has "
                              f"{size[1]}x{size[0]}; pass --set image_size=N to match the data")


def parse_seeds(seeds: Optional[str], repeats: int) -> list[int]:
    """The seeds of `--seeds 42,43,44` (none given: []), checked against `--repeats`."""
    if repeats < 1:
        raise LedgerError("--repeats must be 1 or more")
    if not seeds:
        return []
    try:
        values = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise LedgerError(f"--seeds {seeds!r}: write integers separated by commas, e.g. 42,43,44") from None
    if repeats > 1 and len(values) != repeats:
        raise LedgerError(f"--repeats {repeats} but --seeds names {len(values)} seeds")
    if len(set(values)) != len(values):
        raise LedgerError("--seeds names a seed twice; on a CPU the same seed gives the same result")
    return values


# --------------------------------------------------------------------- starting


def profile_of(request_data: Optional[str]) -> Optional[DemoProfile]:
    """The demo profile `--data` names (`demo`, `demo:tiny`); None for a data folder."""
    try:
        return demo_profile(request_data)
    except ValueError as exc:
        raise LedgerError(str(exc)) from None


def data_dir_for(request_data: Optional[str], job: Job) -> Path:
    """The folder `--data` names; a demo profile's synthetic set (at the job's image size) is made on first use."""
    if not request_data:
        raise LedgerError("say which data to train on: --data demo (bundled synthetic set) or --data PATH")
    profile = profile_of(request_data)
    if profile is not None:
        from reproduce.demo import demo_data_dir

        return demo_data_dir(config.cache_dir(), size=job.image_size, **profile.data)
    return Path(request_data).expanduser().resolve()


def unique_name(session: Session, base: str, suffix: str = "_repro") -> str:
    taken = set(session.scalars(select(Run.name).where(Run.name.like(f"{base}{suffix}%"))))
    n = 1
    while f"{base}{suffix}{n}" in taken:
        n += 1
    return f"{base}{suffix}{n}"


def own_identity(resolved: ResolvedJob, name: str) -> ResolvedJob:
    """A fork's job under its own name: the W&B name is the new row's, the group its model
    (unless `--set` chose them), never the parent's."""
    from reproduce.job import Provenance

    changes, provenance = {}, dict(resolved.provenance)
    if provenance["wandb_name"].source != "override":
        changes["wandb_name"] = name
        provenance["wandb_name"] = Provenance("override", "the new run's own name")
    if provenance["wandb_group"].source != "override":
        changes["wandb_group"] = str(resolved.job.model)
        provenance["wandb_group"] = Provenance("override", "the new run's model")
    return dataclasses.replace(resolved, job=resolved.job.replace(**changes), provenance=provenance)


def append_run(session: Session, original: Run, resolved: ResolvedJob, *, name: Optional[str], data: str,
               data_dir: Path, fingerprint: dict[str, Any], run_dir_root: Path, fork: bool = False,
               wandb_project: Optional[str] = None, wandb_entity: Optional[str] = None) -> Run:
    """The new row, queued, with the job and its hash.

    A reproduction is linked to the original as its child; a fork (`ledger run --from`)
    is a new logged experiment that only records where it started.
    """
    name = check_name(name, "--name") if name is not None else unique_name(session, original.name,
                                                                            "_fork" if fork else "_repro")
    if session.scalar(select(Run.id).where(Run.name == name)) is not None:
        raise LedgerError(f"a run named {name!r} already exists; pick another --name")
    overrides = {f: resolved.job.to_dict()[f] for f, p in resolved.provenance.items() if p.source == "override"}
    if fork:
        resolved = own_identity(resolved, name)
    args = dict(original.args or {})
    args.update({k: v for k, v in overrides.items() if k not in ("weights_sha256",)})
    if fork and "run_name" in args:
        args["run_name"] = name
    run_dir = (run_dir_root / name).resolve()
    profile = profile_of(data)
    generator = {k: list(v) if isinstance(v, tuple) else v for k, v in profile.data.items()} if profile else None
    if generator is not None:
        generator["size"] = resolved.job.image_size
    project, entity = destination(wandb_project, wandb_entity)
    record = JobRecord.start(resolved, data_spec=data, data_dir=data_dir, run_dir=run_dir,
                             forked_from=original.name if fork else None, generator=generator,
                             wandb_project=project, wandb_entity=entity)
    position = (session.scalar(select(Run.position).order_by(Run.position.desc()).limit(1)) or 0) + 1
    label = f"the {profile.spec} data" if profile else str(data_dir)
    if fork:
        changes = ", ".join(f"{k}={v!r}" for k, v in overrides.items()) or "no changes"
        notes = f"forked from {original.name} with {changes}, on {label} (job {resolved.job.hash()[:12]})"
    else:
        notes = f"reproduction of {original.name} on {label} (job {resolved.job.hash()[:12]})"
    run = Run(
        name=name, position=position, date=dt.date.today().isoformat(),
        model=str(resolved.job.model) if fork else original.model,
        args=args, args_raw=render_arguments(args), args_status="ok", links=[], notes=notes,
        kind="logged" if fork else "reproduction", parent_id=None if fork else original.id, status="queued",
        job=record.to_json(), job_hash=resolved.job.hash(), data_fingerprint=fingerprint,
    )
    session.add(run)
    session.flush()
    return run


def queue_jobs(engine: Engine, items: list[tuple[Request, ResolvedJob, Optional[str]]],
               queue: list[dict[str, Any]]) -> list[str]:
    """Append one `queued` row per (request, job, name) with its `queue` settings, in one
    transaction; their names. The data is checked and fingerprinted first (once per
    folder): a job that cannot start appends nothing. Several rows share a `group`."""
    from reproduce.data import data_fingerprint

    prepared = []
    fingerprints: dict[Path, dict[str, Any]] = {}
    for request, resolved, name in items:
        data_dir = data_dir_for(request.data, resolved.job)
        if data_dir not in fingerprints:
            check_data_dir(data_dir, resolved.job)
            fingerprints[data_dir] = data_fingerprint(data_dir)
        prepared.append((request, resolved, name, data_dir))
    runs_root = writable_runs_dir(items[0][0].runs_dir)

    def append(session: Session) -> list[str]:
        reap_stale(session)
        names = []
        for (request, resolved, name, data_dir), settings in zip(prepared, queue):
            original = get_run(session, request.run)
            row = append_run(session, original, resolved, name=name, data=request.data, data_dir=data_dir,
                             fingerprint=fingerprints[data_dir], run_dir_root=runs_root, fork=request.fork,
                             wandb_project=request.wandb_project, wandb_entity=request.wandb_entity)
            row.queue = dict(settings) | {"group": None, "wandb_mode": request.wandb_mode}
            names.append(row.name)
            session.flush()
        if len(names) > 1:
            for row in session.scalars(select(Run).where(Run.name.in_(names))):
                row.queue = dict(row.queue) | {"group": names[0]}
        return names

    return write_retrying(engine, append)


def run_queued(engine: Engine, run_id: int, *, data: Optional[str] = None, progress: Optional[Progress] = None,
               say: Optional[Say] = None) -> dict[str, Any]:
    """Train the claimed queued row `run_id` (a worker's job): on the worker's `data` (or the
    recorded folder, or the demo profile), resuming from its last checkpoint when an earlier
    attempt left one. The data must have the fingerprint recorded when it was queued.

    Raises:
        LedgerError: the data differs or is missing (the row is put back `queued` for another
            worker), or the run failed (`failed`). `RunInterrupted` on Ctrl-C or a cancel.
    """
    from reproduce.data import data_fingerprint

    with transaction(engine, write=False) as session:
        run = session.get(Run, run_id)
        record, name, recorded = JobRecord.of(run), run.name, run.data_fingerprint
        wandb_mode = (run.queue or {}).get("wandb_mode") or "auto"
    job = Job.from_dict(record.job)
    spec = (record.data or {}).get("spec")
    try:
        if profile_of(spec) is not None:
            data_dir = data_dir_for(spec, job)
        else:
            data_dir = Path(data).expanduser().resolve() if data and profile_of(data) is None else record.data_dir
            check_data_dir(data_dir, job)
            if recorded and data_fingerprint(data_dir) != recorded:
                raise LedgerError(f"{data_dir} is not the data {name} was queued with (its fingerprint differs)")
    except LedgerError as exc:
        set_status(engine, run_id, "queued", error=f"not run by a worker whose data did not fit: {exc}")
        raise
    run_dir = Path(record.run_dir)
    model = _prepare_model(job)
    check_disk(run_dir.parent, model)
    resume_from = (run_dir / "last.pt").exists()
    if say is not None:
        say(f"resuming {name} from {run_dir / 'last.pt'}" if resume_from else f"training {name} in {run_dir}")
    return execute(engine, run_id, job, data_dir, run_dir, model=model, wandb_mode=wandb_mode, name=name,
                   resume=resume_from, progress=progress, keep_last=False)


def start(engine: Engine, request: Request, resolved: Optional[ResolvedJob] = None, *,
          progress: Optional[Progress] = None, say: Optional[Say] = None) -> dict[str, Any]:
    """Append a row for `request` and train it; returns the run's summary.

    The data is checked and fingerprinted and the model built (from the job's seed)
    before the row is appended: missing data or weights are an error that leaves no row.

    Args:
        engine: the ledger.
        request: what to run; `resolved`, when given, is its already resolved job.
        progress: a display per epoch and batch (see `Progress`); default: none.
        say: called with one line when the row is appended; default: silent.

    Raises:
        LedgerError: the request, the data or the weights are wrong, or the run failed
            (its row is then `failed`). `RunInterrupted` when Ctrl-C or a kill stopped it.
    """
    from reproduce.data import data_fingerprint

    if resolved is None:
        _, resolved = plan(engine, request)
    job = resolved.job
    data_dir = data_dir_for(request.data, job)
    check_data_dir(data_dir, job)
    fingerprint = data_fingerprint(data_dir)
    runs_root = writable_runs_dir(request.runs_dir)
    model = _prepare_model(job)
    check_disk(runs_root, model)

    def append(session: Session) -> tuple[int, Path, str, Job]:
        reap_stale(session)
        original = get_run(session, request.run)
        row = append_run(session, original, resolved, name=request.name, data=request.data, data_dir=data_dir,
                         fingerprint=fingerprint, run_dir_root=runs_root, fork=request.fork,
                         wandb_project=request.wandb_project, wandb_entity=request.wandb_entity)
        return row.id, Path(JobRecord.of(row).run_dir), row.name, Job.from_dict(JobRecord.of(row).job)

    run_id, run_dir, new_name, job = write_retrying(engine, append)
    verb = "starting a run from" if request.fork else "reproducing"
    if say is not None:
        say(f"{verb} {request.run} as {new_name} (job {job.hash()[:12]}) in {run_dir}")
    return execute(engine, run_id, job, data_dir, run_dir, model=model, wandb_mode=request.wandb_mode,
                   name=new_name, resume=False, progress=progress, keep_last=request.keep_last)


def writable_runs_dir(given: Optional[Path]) -> Path:
    """The runs folder, made if missing; an error before any row is appended if it cannot be written."""
    root = config.runs_dir(given)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LedgerError(f"cannot create the runs folder {root}: {exc.strerror}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise LedgerError(f"cannot write to the runs folder {root}; pass --runs-dir or set $LEDGER_RUNS_DIR")
    return root


def repeat_seeds(resolved: ResolvedJob, repeats: int, seeds: list[int]) -> list[int]:
    """The seeds of `--repeats N`: those given, else the job's seed and the ones after it."""
    return seeds or [resolved.job.seed + i for i in range(repeats)]


def start_repeats(engine: Engine, request: Request, resolved: ResolvedJob, seeds: list[int], *,
                  progress: Optional[Progress] = None, say: Optional[Say] = None) -> list[dict[str, Any]]:
    """Seed repeats: one sibling run per seed, in order; the job of `resolved` keeps its own seed."""
    summaries = []
    for seed in seeds:
        if seed != resolved.job.seed:
            request = dataclasses.replace(request, seed=seed)
            _, resolved = plan(engine, request)
        summaries.append(start(engine, request, resolved, progress=progress, say=say))
    return summaries


def resume(engine: Engine, name: str, *, wandb_mode: str = "auto", progress: Optional[Progress] = None,
           say: Optional[Say] = None, keep_last: bool = False) -> dict[str, Any]:
    """Continue the interrupted run `name` from its last finished epoch; returns its summary.

    A run stopped before its first epoch ended has no checkpoint: it starts again from
    epoch 1, on the same row with the same job. A row still `running` is taken over only
    when its trainer is gone (see `ledger.store.liveness`); a live one is refused.
    """
    with transaction(engine) as session:
        run, job, run_dir, data_dir = load_for_resume(session, name)
        run_id = run.id
    model = _prepare_model(job)
    check_disk(run_dir.parent, model)
    from_checkpoint = (run_dir / "last.pt").exists()
    if say is not None:
        say(f"resuming {name} from {run_dir / 'last.pt'}" if from_checkpoint else
            f"restarting {name} from epoch 1: it stopped before its first checkpoint")
    return execute(engine, run_id, job, data_dir, run_dir, model=model, wandb_mode=wandb_mode, name=name,
                   resume=from_checkpoint, progress=progress, keep_last=keep_last)


def load_for_resume(session: Session, name: str) -> tuple[Run, Job, Path, Path]:
    run = get_run(session, name, for_update=True)
    if run.status == "running" and stale_reason(run) is None:
        raise LedgerError(f"{name} is still running ({live_description(run)}); let it finish, or stop that "
                          "process first")
    reap_stale(session)
    record = JobRecord.of(run)
    if record is None or record.run_dir is None:
        raise LedgerError(f"{name} was not started by ledger; --resume continues an interrupted reproduction or run")
    if run.status == "finished":
        raise LedgerError(f"{name} already finished; nothing to resume")
    return run, Job.from_dict(record.job), Path(record.run_dir), record.data_dir


def check_disk(root: Path, model: Any) -> None:
    """Enough free space under `root` for the run's checkpoints, or a LedgerError before it starts:
    best.pt holds the model; last.pt the model with the optimiser's state (up to four times
    its size), written through a temporary file while the previous one is still there."""
    import shutil

    from reproduce.models import count_parameters

    needed = count_parameters(model) * 4 * 9 + (64 << 20)
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    if free < needed:
        raise LedgerError(f"not enough free disk under {root} for the checkpoints: {_size(free)} free, about "
                          f"{_size(needed)} needed; free some space or pass --runs-dir")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _prepare_model(job: Job) -> Any:
    from reproduce.models import WeightsUnavailable
    from reproduce.train import build_seeded_model

    try:
        return build_seeded_model(job)
    except (WeightsUnavailable, FileNotFoundError, ValueError) as exc:
        raise LedgerError(str(exc)) from None


# -------------------------------------------------------------------- training


class LedgerHooks:
    """Writes each epoch's metrics to the ledger and forwards steps to W&B and the display."""

    def __init__(self, engine: Engine, run_id: int, tracker: Any, display: Any):
        self.engine, self.run_id, self.tracker, self.display = engine, run_id, tracker, display

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self.tracker.log(step, metrics)

    def on_epoch_start(self, epoch: int, batches: int) -> None:
        if self.display is not None:
            self.display.on_epoch_start(epoch, batches)

    def on_batch(self, loss: float, images: int) -> None:
        if self.display is not None:
            self.display.on_batch(loss, images)

    def on_epoch(self, result: Any) -> None:
        self.record([result])
        if self.display is not None:
            self.display.on_epoch(result)

    def on_restored(self, history: list[Any]) -> None:
        """Epochs finished before an interruption whose metrics the ledger may have missed."""
        self.record(history)

    def record(self, results: list[Any]) -> None:
        with transaction(self.engine) as session:
            run = session.get(Run, self.run_id)
            have = {(m.name, m.step) for m in run.metrics}
            for result in results:
                for name in METRIC_NAMES:
                    if (name, result.epoch) not in have:
                        run.metrics.append(Metric(name=name, step=result.epoch, epoch=result.epoch,
                                                  value=float(getattr(result, name))))
            session.flush()
            run.heartbeat_at = utcnow()  # a lost attempt lasted at least until its last epoch was written
            run.val_miou = max((m.value for m in run.metrics if m.name == "val_miou"), default=None)


def set_status(engine: Engine, run_id: int, status: str, **fields: Any) -> None:
    with transaction(engine) as session:
        run = session.get(Run, run_id)
        run.status = status
        for key, value in fields.items():
            setattr(run, key, value)


class Heartbeat:
    """Renews the running row's heartbeat every `every` seconds from a thread of its own,
    off the training loop; a beat that fails (a busy database) is simply tried again later."""

    def __init__(self, engine: Engine, run_id: int, every: float = HEARTBEAT_S):
        self.engine, self.run_id, self.every = engine, run_id, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ledger-heartbeat-{run_id}", daemon=True)

    def beat(self) -> None:
        with transaction(self.engine) as session:
            session.execute(update(Run).where(Run.id == self.run_id, Run.status == "running")
                            .values(heartbeat_at=utcnow()))

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.beat()
            except Exception:  # the next beat, or the row's final status, says the rest
                pass

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every + 5)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """A `kill` of the job is recorded like Ctrl-C: interrupted, resumable."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def execute(engine: Engine, run_id: int, job: Job, data_dir: Path, run_dir: Path, *, model: Any, wandb_mode: str,
            name: str, resume: bool = False, progress: Optional[Progress] = None,
            keep_last: bool = False) -> dict[str, Any]:
    """Train the row `run_id`; returns the summary. Its status is final whatever happens.

    Raises:
        RunInterrupted: Ctrl-C or SIGTERM; the row is `interrupted`.
        LedgerError: the run failed; the row is `failed` with the error.
    """
    from reproduce.data import DataError

    try:
        with (progress(job.num_epochs) if progress is not None else nullcontext()) as display:
            return _train_row(engine, run_id, job, data_dir, run_dir, model=model, wandb_mode=wandb_mode,
                              display=display, resume=resume, keep_last=keep_last)
    except KeyboardInterrupt:
        raise RunInterrupted(name) from None
    except DataError as exc:
        raise LedgerError(f"{name} failed: {exc}") from None
    except Exception as exc:
        raise LedgerError(f"{name} failed: {exc.__class__.__name__}: {exc} (status recorded as failed)") from None


def _train_row(engine: Engine, run_id: int, job: Job, data_dir: Path, run_dir: Path, *, model: Any,
               wandb_mode: str, display: Any, resume: bool, keep_last: bool) -> dict[str, Any]:
    from reproduce.environment import environment
    from reproduce.runfiles import write_job_files
    from reproduce.tracking import Tracker
    from reproduce.train import select_device, train

    with transaction(engine, write=False) as session:
        run = session.get(Run, run_id)
        record = JobRecord.of(run)
        done = max((m.step for m in run.metrics if m.name == "val_miou"), default=0) if resume else 0
    tracker = None
    # Everything after the row was appended is guarded: whatever fails (an unwritable run
    # folder, a full disk, a device that is not there) leaves the row failed with the error.
    try:
        with sigterm_as_interrupt():
            env = environment(str(select_device(job)))
            write_job_files(run_dir, record.to_json(), env)
            with transaction(engine) as session:
                run = session.get(Run, run_id)
                run.status, run.environment, run.error = "running", env, None
                run.host, run.pid, run.heartbeat_at = this_host(), os.getpid(), utcnow()
                begin_attempt(run, host=run.host, pid=run.pid, from_epoch=done + 1)
            with Heartbeat(engine, run_id):
                tracker = Tracker(job=job, config=record.to_json(), run_dir=run_dir, mode=wandb_mode,
                                  resume_id=record.wandb_id if resume else None, project=record.wandb_project,
                                  entity=record.wandb_entity)
                if tracker.link:
                    record = record.replace(wandb_id=tracker.run_id)
                    set_status(engine, run_id, "running", links=[tracker.link], job=record.to_json())
                hooks = LedgerHooks(engine, run_id, tracker, display)
                result = train(job, data_dir, run_dir, cache_dir=config.cache_dir(), resume=resume, hooks=hooks,
                               model_factory=lambda _job: model)
    except KeyboardInterrupt:
        _finish(engine, run_id, "interrupted", tracker, 255,
                error="interrupted; continue with `ledger reproduce --resume`")
        raise
    except BaseException as exc:
        _finish(engine, run_id, "failed", tracker, 1,
                error=f"{exc.__class__.__name__}: {exc}")
        raise
    if not keep_last:
        (run_dir / "last.pt").unlink(missing_ok=True)  # the state to resume from; a finished run needs none
    summary = training_summary(result, job) | {"run_dir": str(run_dir), "run_dir_bytes": folder_bytes(run_dir)}
    _finish(engine, run_id, "finished", tracker, 0, val_miou=summary["val_miou"],
            lb_val_miou=summary["lb_val_miou"], checkpoint_path=str(result.checkpoint))
    with transaction(engine) as session:
        run = session.get(Run, run_id)
        run.notes = (run.notes or "") + (
            f". best val mIoU {summary['val_miou']:.4f} at epoch {summary['best_epoch']}/{job.num_epochs}; "
            f"checkpoint of epoch {summary['checkpoint_epoch']} ({summary['checkpoint_rule']})"
        )
        summary["name"] = run.name
        summary["links"] = list(run.links or [])
        summary["same_job"] = same_job_runs(session, run)
    return summary


CHECKPOINT_RULES = {"val_loss": "lowest val loss", "val_miou": "highest val mIoU"}


def training_summary(result: Any, job: Job) -> dict[str, Any]:
    """What a finished run reports. "Best" is the maximum over the epochs; the checkpoint
    kept is the one the job's rule chose (the first code state kept the lowest val loss),
    with its own val mIoU beside it."""
    best = max(result.epochs, key=lambda e: e.val_miou)
    return {
        "val_miou": best.val_miou, "best_epoch": best.epoch,
        "lb_val_miou": max(e.lb_val_miou for e in result.epochs),
        "checkpoint_epoch": result.best_epoch, "checkpoint_rule": CHECKPOINT_RULES[job.checkpoint_metric],
        "checkpoint_val_miou": result.best_val_miou, "checkpoint_lb_val_miou": result.best_lb_val_miou,
        "checkpoint": str(result.checkpoint), "submission": str(result.submission) if result.submission else None,
        "background_val_miou": getattr(result, "background_val_miou", None),
        "background_lb_val_miou": getattr(result, "background_lb_val_miou", None),
        "epochs": [e.__dict__ for e in result.epochs],
    }


def _finish(engine: Engine, run_id: int, status: str, tracker: Any, exit_code: int, **fields: Any) -> None:
    if tracker is not None:
        try:
            tracker.finish(exit_code)
        except Exception:  # W&B failing to close must not hide the job's own outcome
            pass
    with transaction(engine) as session:
        run = session.get(Run, run_id)
        run.status = status
        for key, value in fields.items():
            setattr(run, key, value)
        end_attempt(run, status)
