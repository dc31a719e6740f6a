"""`ledger reproduce`: a row of the ledger -> a resolved job -> a run -> a new row.

The appended row moves queued -> running -> finished | failed | interrupted, each
change in its own short transaction so that `ledger list` shows it while the job runs
and a crash or Ctrl-C never leaves it `running`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ledger.args import render_arguments
from ledger.db import LedgerError, transaction
from ledger.models import Metric, Run
from ledger.queries import get_run
from reproduce.job import Job, ResolvedJob
from reproduce.resolve import DEMO_PROFILE, ResolveError, RowInput, resolve, resolve_stored

DEMO = "demo"
METRIC_NAMES = ("train_loss", "val_loss", "val_miou", "lb_val_miou", "lr")


@dataclass
class Request:
    """What the user asked `ledger reproduce` for."""

    run: str
    data: Optional[str] = None  # "demo" or a folder
    overrides: dict[str, Any] = field(default_factory=dict)
    weights: Optional[Path] = None
    no_pretrained: bool = False
    device: Optional[str] = None
    fast: bool = False
    name: Optional[str] = None
    wandb_mode: str = "auto"
    runs_dir: Optional[Path] = None
    seed: Optional[int] = None
    fork: bool = False  # `ledger run --from`: a new experiment, not a reproduction


def row_input(run: Run) -> RowInput:
    return RowInput(run.name, run.date, run.args, run.args_status, run.args_error, run.kind)


def runs_dir(request_dir: Optional[Path]) -> Path:
    return Path(request_dir or os.environ.get("LEDGER_RUNS_DIR") or "reproductions")


def cache_dir() -> Path:
    return Path(os.environ.get("LEDGER_CACHE") or Path.home() / ".cache" / "ledger")


def resolve_request(session: Session, request: Request) -> tuple[Run, ResolvedJob]:
    """The original row and its resolved job with the request's profile and overrides."""
    original = get_run(session, request.run)
    if original.kind == "reproduction" and original.parent is not None and not request.fork:
        raise LedgerError(f"{original.name} is itself a reproduction of {original.parent.name}; reproduce that run, "
                          f"or continue this one with --resume")
    overrides = dict(request.overrides)
    if request.weights is not None:
        overrides["weights_path"] = str(request.weights.resolve())
        overrides["weights_sha256"] = _sha256(request.weights)
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
    profile = DEMO_PROFILE if request.data == DEMO else None
    try:
        if original.job and "job" in original.job:
            resolved = resolve_stored(original.job, overrides, profile=profile, profile_name="--data demo profile")
        else:
            resolved = resolve(row_input(original), overrides, profile=profile, profile_name="--data demo profile")
    except (ResolveError, KeyError) as exc:
        raise LedgerError(str(exc).strip("'\"")) from None
    return original, resolved


def _sha256(path: Path) -> str:
    if not path.is_file():
        raise LedgerError(f"--weights: no such file {path}")
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def data_dir_for(request_data: Optional[str], job: Job) -> Path:
    if not request_data:
        raise LedgerError("say which data to train on: --data demo (bundled synthetic set) or --data PATH")
    if request_data == DEMO:
        from reproduce.demo import demo_data_dir

        return demo_data_dir(cache_dir(), size=job.image_size)
    return Path(request_data).expanduser().resolve()


def unique_name(session: Session, base: str, suffix: str = "_repro") -> str:
    taken = set(session.scalars(select(Run.name).where(Run.name.like(f"{base}{suffix}%"))))
    n = 1
    while f"{base}{suffix}{n}" in taken:
        n += 1
    return f"{base}{suffix}{n}"


def append_reproduction(session: Session, original: Run, resolved: ResolvedJob, *, name: Optional[str],
                        data: str, data_dir: Path, fingerprint: dict[str, Any], run_dir_root: Path,
                        fork: bool = False) -> Run:
    """The new row, queued, with the job and its hash.

    A reproduction is linked to the original as its child; a fork (`ledger run --from`)
    is a new logged experiment that only records where it started.
    """
    name = name or unique_name(session, original.name, "_fork" if fork else "_repro")
    if session.scalar(select(Run.id).where(Run.name == name)) is not None:
        raise LedgerError(f"a run named {name!r} already exists; pick another --name")
    overrides = {f: resolved.job.to_dict()[f] for f, p in resolved.provenance.items() if p.source == "override"}
    args = dict(original.args or {})
    args.update({k: v for k, v in overrides.items() if k not in ("weights_sha256",)})
    run_dir = (run_dir_root / name).resolve()
    record = resolved.to_dict() | {"data": {"spec": data, "dir": str(data_dir)}, "run_dir": str(run_dir)}
    position = (session.scalar(select(Run.position).order_by(Run.position.desc()).limit(1)) or 0) + 1
    label = "the demo data" if data == DEMO else str(data_dir)
    if fork:
        record["forked_from"] = original.name
        changes = ", ".join(f"{k}={v!r}" for k, v in overrides.items()) or "no changes"
        notes = f"forked from {original.name} with {changes}, on {label} (job {resolved.job.hash()[:12]})"
    else:
        notes = f"reproduction of {original.name} on {label} (job {resolved.job.hash()[:12]})"
    run = Run(
        name=name, position=position, date=dt.date.today().isoformat(), model=original.model,
        args=args, args_raw=render_arguments(args), args_status="ok", links=[], notes=notes,
        kind="logged" if fork else "reproduction", parent_id=None if fork else original.id, status="queued",
        job=record, job_hash=resolved.job.hash(), data_fingerprint=fingerprint,
    )
    session.add(run)
    session.flush()
    return run


class LedgerHooks:
    """Writes each epoch's metrics to the ledger and forwards steps to W&B and the display."""

    def __init__(self, engine: Engine, run_id: int, tracker: Any, display: Any):
        self.engine, self.run_id, self.tracker, self.display = engine, run_id, tracker, display

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self.tracker.log(step, metrics)

    def on_epoch_start(self, epoch: int, batches: int) -> None:
        self.display.on_epoch_start(epoch, batches)

    def on_batch(self, loss: float, images: int) -> None:
        self.display.on_batch(loss, images)

    def on_epoch(self, result: Any) -> None:
        self.record([result])
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
            run.val_miou = max((m.value for m in run.metrics if m.name == "val_miou"), default=None)


def set_status(engine: Engine, run_id: int, status: str, **fields: Any) -> None:
    with transaction(engine) as session:
        run = session.get(Run, run_id)
        run.status = status
        for key, value in fields.items():
            setattr(run, key, value)


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


def execute(engine: Engine, run_id: int, job: Job, data_dir: Path, run_dir: Path, *, model: Any,
            wandb_mode: str, display: Any, resume: bool = False) -> dict[str, Any]:
    """Run the job for the row `run_id`; returns the summary. Status is always final."""
    from reproduce.environment import environment
    from reproduce.tracking import Tracker
    from reproduce.train import select_device, train

    started = time.perf_counter()
    with transaction(engine) as session:
        run = session.get(Run, run_id)
        record = dict(run.job or {})
        previous_duration = run.duration_s or 0.0
    env = environment(str(select_device(job)))
    write_job_files(run_dir, record, env)
    set_status(engine, run_id, "running", environment=env, error=None)
    tracker = None
    try:
        with sigterm_as_interrupt():
            tracker = Tracker(job=job, config=record, run_dir=run_dir, mode=wandb_mode,
                              resume_id=record.get("wandb_id") if resume else None)
            if tracker.link:
                record["wandb_id"] = tracker.run_id
                set_status(engine, run_id, "running", links=[tracker.link], job=record)
            hooks = LedgerHooks(engine, run_id, tracker, display)
            result = train(job, data_dir, run_dir, cache_dir=cache_dir(), resume=resume, hooks=hooks,
                           model_factory=lambda _job: model)
    except KeyboardInterrupt:
        _finish(engine, run_id, "interrupted", started, previous_duration, tracker, 255,
                error="interrupted; continue with `ledger reproduce --resume`")
        raise
    except BaseException as exc:
        _finish(engine, run_id, "failed", started, previous_duration, tracker, 1,
                error=f"{exc.__class__.__name__}: {exc}")
        raise
    summary = {
        "best_epoch": result.best_epoch, "val_miou": result.best_val_miou, "lb_val_miou": result.best_lb_val_miou,
        "checkpoint": str(result.checkpoint), "submission": str(result.submission) if result.submission else None,
        "epochs": [e.__dict__ for e in result.epochs],
    }
    _finish(engine, run_id, "finished", started, previous_duration, tracker, 0, val_miou=result.best_val_miou,
            lb_val_miou=result.best_lb_val_miou, checkpoint_path=str(result.checkpoint))
    with transaction(engine) as session:
        run = session.get(Run, run_id)
        run.notes = (run.notes or "") + (
            f". best val mIoU {result.best_val_miou:.4f} (LB-style {result.best_lb_val_miou:.4f}) "
            f"at epoch {result.best_epoch}/{job.num_epochs}"
        )
        summary["name"] = run.name
        summary["links"] = list(run.links or [])
    return summary


def write_job_files(run_dir: Path, record: dict[str, Any], env: dict[str, Any]) -> None:
    """The resolved job next to its checkpoints: job.json (everything) and args.yaml (the
    values alone, as timm writes them), so a run folder explains itself without the ledger."""
    import json

    import yaml

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "job.json").write_text(
        json.dumps(record | {"environment": env}, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    (run_dir / "args.yaml").write_text(yaml.safe_dump(record["job"], sort_keys=False, allow_unicode=True),
                                       encoding="utf-8")


def _finish(engine: Engine, run_id: int, status: str, started: float, previous: float, tracker: Any,
            exit_code: int, **fields: Any) -> None:
    if tracker is not None:
        try:
            tracker.finish(exit_code)
        except Exception:  # W&B failing to close must not hide the job's own outcome
            pass
    set_status(engine, run_id, status, duration_s=previous + time.perf_counter() - started, **fields)


def load_for_resume(session: Session, name: str) -> tuple[Run, Job, Path, Path]:
    run = get_run(session, name)
    if not run.job or "run_dir" not in run.job:
        raise LedgerError(f"{name} was not started by ledger; --resume continues an interrupted reproduction or run")
    if run.status == "finished":
        raise LedgerError(f"{name} already finished; nothing to resume")
    job = Job.from_dict(run.job["job"])
    run_dir = Path(run.job["run_dir"])
    if not (run_dir / "last.pt").exists():
        raise LedgerError(f"{name} has no checkpoint in {run_dir} (it stopped before its first epoch ended); "
                          "start a new reproduction instead")
    data_dir = Path(run.job["data"]["dir"])
    return run, job, run_dir, data_dir

