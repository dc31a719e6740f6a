"""The ledger as a queue: queued rows, workers that claim them, nothing run twice.

A queued row is a real row (status `queued`) carrying its resolved job or its command,
so `list`, `show` and `compare` see it before it runs; its `queue` column holds the
attempt limit, the sweep it belongs to, and a cancel request. A worker claims the oldest
row it can run in one transaction: `SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL,
SQLite's write lock (`BEGIN IMMEDIATE`) on a shared file. The claim sets the row
`running` with the worker's host and pid; the job renews its heartbeat. A worker that dies
leaves a stale row: the next claim (or any write command) puts it back on the queue
(`ledger.store.liveness.reap_stale`) and another worker resumes it from its last
checkpoint (the built-in recipe) or starts it again (a command), failing it after
`max_attempts` attempts.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Optional

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session

from ledger import runs
from ledger.core.args import parse_value
from ledger.core.clock import utcnow
from ledger.core.errors import LedgerError, RunInterrupted
from ledger.store.db import transaction, write_retrying
from ledger.store.jobrecord import JobRecord
from ledger.store.liveness import HEARTBEAT_S, pid_alive, reap_stale, shown_status, stale_after_s, this_host
from ledger.store.models import Metric, Run, Worker

DEFAULT_MAX_ATTEMPTS = 3
Say = Callable[[str], None]


def parse_sweeps(items: Optional[list[str]]) -> dict[str, list[str]]:
    """`--sweep key=v1,v2,...` options (several: the product), values as written."""
    out: dict[str, list[str]] = {}
    for item in items or []:
        key, sep, values = item.partition("=")
        key = key.strip()
        parts = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key or not parts:
            raise LedgerError(f"--sweep {item!r}: write KEY=V1,V2,..., e.g. --sweep lr=1e-4,2e-4")
        if key in out:
            raise LedgerError(f"--sweep {key} is given twice")
        if len(set(parts)) != len(parts):
            raise LedgerError(f"--sweep {key}: a value is listed twice")
        out[key] = parts
    return out


def _suffix(values: dict[str, str]) -> str:
    return "_".join(f"{k}{v}" for k, v in values.items()).replace("/", "-")


@dataclass(frozen=True)
class QueueRequest:
    """What `ledger queue add` (or `ledger run --from ... --queue`) asks for."""

    base: runs.Request  # the run, the data, the overrides every queued job shares
    sweep: dict[str, list[str]] = field(default_factory=dict)
    repeats: int = 1
    seeds: tuple[int, ...] = ()
    max_attempts: int = DEFAULT_MAX_ATTEMPTS


def add(engine: Engine, request: QueueRequest) -> list[str]:
    """Queue one row per sweep combination and seed; their names. All or nothing: a bad
    key, value or seed queues none of them.

    Names: `RUN_reproN` for plain repeats of a reproduction, `RUN_forkN` for forks, and
    with a sweep `NAME_key1v1_key2v2` (a seed suffix `_seedS` when repeated too).
    """
    from ledger import commands

    if request.max_attempts < 1:
        raise LedgerError("--max-attempts must be 1 or more")
    base = request.base
    if commands.has_command(engine, base.run):
        if request.sweep or request.repeats > 1 or request.seeds:
            raise LedgerError("--sweep, --repeats and --seeds are for built-in rows; a command row is queued as is "
                              "(with --set to change an argument)")
        settings = {"max_attempts": request.max_attempts}
        if base.data:
            settings["data"] = base.data  # given to the script as $LEDGER_DATA
        return [commands.queue_command(engine, base.run, overrides={k: str(v) for k, v in base.overrides.items()},
                                       new_name=base.name, runs_dir=base.runs_dir, queue=settings)]
    if not base.data:
        raise LedgerError("say which data the queued jobs train on: --data demo or --data PATH (the worker's "
                          "--data must hold the same files)")
    combos = [dict(zip(request.sweep, values)) for values in itertools.product(*request.sweep.values())] \
        if request.sweep else [{}]
    _, first = runs.plan(engine, base)
    seeds = list(request.seeds) or [first.job.seed + i for i in range(request.repeats)]
    plans = []
    for combo in combos:
        for seed in seeds:
            overrides = dict(base.overrides) | {k: parse_value(v) for k, v in combo.items()}
            req = dataclasses.replace(base, overrides=overrides, seed=seed if len(seeds) > 1 or request.seeds else base.seed)
            _, resolved = runs.plan(engine, req)  # refuses an unknown key or a bad value before anything is queued
            name = base.name
            if combo or (len(seeds) > 1 and base.name):
                stem = base.name or f"{base.run}{'_fork' if base.fork else ''}"
                name = "_".join(p for p in (stem, _suffix(combo), f"seed{seed}" if len(seeds) > 1 else "") if p)
            plans.append((req, resolved, name, combo, seed))
    names = [p[2] for p in plans if p[2]]
    if len(set(names)) != len(names):
        raise LedgerError("two queued jobs would get the same name; give --name a stem or change the sweep")
    queue = [{"max_attempts": request.max_attempts, "sweep": combo or None, "seed": seed,
              "added_at": utcnow().isoformat(), "added_by": this_host()} for _, _, _, combo, seed in plans]
    return runs.queue_jobs(engine, [(req, resolved, name) for req, resolved, name, _, _ in plans], queue)


def cancel(engine: Engine, names: list[str]) -> list[dict[str, str]]:
    """Cancel queued rows (they become `interrupted`, never run) and running ones (their
    worker stops the job at its next heartbeat). What happened to each."""
    from ledger.store.sql_reader import get_run

    out = []

    def work(session: Session) -> None:
        for name in names:
            run = get_run(session, name, for_update=True)
            if run.status == "queued":
                run.status, run.error = "interrupted", "cancelled before it ran (ledger queue cancel)"
                out.append({"run": name, "was": "queued", "now": "cancelled"})
            elif run.status == "running":
                run.queue = dict(run.queue or {}) | {"cancel": True}
                out.append({"run": name, "was": "running", "now": "cancel requested; its worker stops it"})
            else:
                raise LedgerError(f"{name} is {run.status or 'not a job'}, neither queued nor running: nothing to cancel")

    write_retrying(engine, work)
    return out


def status(engine: Engine, *, recent_hours: float = 24.0) -> dict[str, Any]:
    """Queued, running, stale and recently finished queue rows, with worker, GPU, epoch and age; the workers."""
    now = utcnow()
    since = now - timedelta(hours=recent_hours)
    with transaction(engine, write=False) as session:
        rows = session.scalars(select(Run).where(
            Run.queue.is_not(None) | Run.status.in_(("queued", "running"))).order_by(Run.position)).all()
        epochs = dict(session.execute(select(Metric.run_id, func.max(Metric.step))
                                      .where(Metric.run_id.in_([r.id for r in rows])).group_by(Metric.run_id)).all())
        workers = session.scalars(select(Worker).order_by(Worker.name)).all()
        items = []
        for run in rows:
            shown = shown_status(run)
            updated = run.updated_at if run.updated_at.tzinfo else run.updated_at.replace(tzinfo=now.tzinfo)
            if shown not in ("queued", "running", "stale") and updated < since:
                continue
            attempt = (run.attempts or [{}])[-1]
            items.append({"name": run.name, "status": shown, "worker": attempt.get("worker"),
                          "gpu": attempt.get("gpu"), "host": run.host, "pid": run.pid,
                          "epoch": epochs.get(run.id), "attempts": len(run.attempts or []),
                          "age_s": round((now - updated).total_seconds(), 1), "error": run.error,
                          "cancel": bool((run.queue or {}).get("cancel"))})
        return {"runs": items, "workers": [_worker_view(w, now) for w in workers]}


def _aware(moment: Any, now: Any) -> Any:
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=now.tzinfo)


def _worker_view(worker: Worker, now: Any) -> dict[str, Any]:
    beat = _aware(worker.heartbeat_at, now)
    return {"name": worker.name, "host": worker.host, "pid": worker.pid, "gpu": worker.gpu, "data": worker.data,
            "heartbeat_s": round((now - beat).total_seconds(), 1) if beat else None, "run_id": worker.run_id}


# --------------------------------------------------------------------- workers


@dataclass
class WorkerOptions:
    name: Optional[str] = None  # default: HOST-PID
    gpu: Optional[str] = None
    data: Optional[str] = None  # a folder, or demo: the data this worker trains on
    until_empty: bool = False
    max_jobs: Optional[int] = None
    poll_s: float = 2.0
    echo: bool = True  # a command's output to this terminal


def gpu_count() -> int:
    """GPUs nvidia-smi lists here (0 without it)."""
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def check_gpu(gpu: Optional[str]) -> None:
    if gpu is None:
        return
    if not gpu.isdigit():
        raise LedgerError(f"--gpu {gpu!r}: give a GPU index, e.g. --gpu 0")
    count = gpu_count()
    if int(gpu) >= count:
        raise LedgerError(f"--gpu {gpu}: there is no such GPU here (nvidia-smi lists {count})")


def register(engine: Engine, options: WorkerOptions) -> str:
    """Enter this worker in the `workers` table; a live worker of the same name is refused."""
    name = options.name or f"{this_host()}-{os.getpid()}"

    def work(session: Session) -> None:
        other = session.get(Worker, name, with_for_update=True)
        if other is not None:
            beat = _aware(other.heartbeat_at, utcnow())
            fresh = beat is not None and (utcnow() - beat).total_seconds() < stale_after_s()
            alive = fresh and not (other.host == this_host() and not pid_alive(other.pid))
            if alive:
                raise LedgerError(f"a worker named {name!r} is already running (pid {other.pid} on {other.host}); "
                                  "give this one another --name")
            session.delete(other)
            session.flush()
        session.add(Worker(name=name, host=this_host(), pid=os.getpid(), gpu=options.gpu, data=options.data,
                           started_at=utcnow(), heartbeat_at=utcnow()))

    write_retrying(engine, work)
    return name


def unregister(engine: Engine, name: str) -> None:
    try:
        with transaction(engine) as session:
            session.execute(delete(Worker).where(Worker.name == name, Worker.pid == os.getpid()))
    except Exception:  # the ledger went away; the stale entry is replaced by the next worker of that name
        pass


class WorkerBeat:
    """Renews the worker's entry; stops the current job when its row asks to be cancelled."""

    def __init__(self, engine: Engine, name: str, every: float = HEARTBEAT_S):
        self.engine, self.name, self.every = engine, name, every
        self.run_id: Optional[int] = None
        self.cancelled = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"ledger-worker-{name}", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                with transaction(self.engine) as session:
                    session.execute(update(Worker).where(Worker.name == self.name)
                                    .values(heartbeat_at=utcnow(), run_id=self.run_id))
                    if self.run_id is not None and not self.cancelled:
                        row = session.get(Run, self.run_id)
                        if row is not None and (row.queue or {}).get("cancel"):
                            self.cancelled = True
                            os.kill(os.getpid(), signal.SIGINT)  # the job stops as on Ctrl-C
            except Exception:  # a busy ledger: the next beat tries again
                pass

    def __enter__(self) -> "WorkerBeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every + 5)


def claim(engine: Engine, worker: str, gpu: Optional[str], data: Optional[str],
          skipped: Optional[set[int]] = None) -> Optional[int]:
    """Claim the oldest queued row this worker can run; its id, or None when there is none now.

    One transaction: stale rows are put back first, then the oldest queued row not locked
    by another claim (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: the write lock this
    transaction holds) is set `running` with this worker's host and pid.
    """
    skipped = skipped if skipped is not None else set()

    def work(session: Session) -> Optional[int]:
        reap_stale(session)
        query = select(Run).where(Run.status == "queued", Run.queue.is_not(None))
        if skipped:
            query = query.where(Run.id.not_in(skipped))
        query = query.order_by(Run.position, Run.id).limit(16).with_for_update(skip_locked=True)
        for run in session.scalars(query):
            reason = unfit(run, data)
            if reason is not None:
                skipped.add(run.id)
                return -run.id  # told once, by the caller
            run.status, run.error = "running", None
            run.host, run.pid, run.heartbeat_at = this_host(), os.getpid(), utcnow()
            run.queue = dict(run.queue) | {"worker": worker, "gpu": gpu}
            return run.id
        return None

    return write_retrying(engine, work)


def unfit(run: Run, data: Optional[str]) -> Optional[str]:
    """Why this worker cannot run the row, or None. A built-in job whose recorded data is a
    folder runs only on a worker whose --data holds the same files (by fingerprint)."""
    if run.command:
        return None
    record = JobRecord.of(run)
    if record is None:
        return "it has neither a job nor a command"
    spec = (record.data or {}).get("spec")
    if runs.profile_of(spec) is not None:
        return None  # any worker makes the demo data
    if not data or runs.profile_of(data) is not None:
        return f"it trains on {spec}; this worker has no --data folder"
    return None  # the fingerprint is compared when the job starts (hashing the data is slow)


def waiting(engine: Engine, exclude: Optional[set[int]] = None) -> int:
    """Queued rows, locked by a claim or not, other than those in `exclude`."""
    query = select(func.count(Run.id)).where(Run.status == "queued", Run.queue.is_not(None))
    if exclude:
        query = query.where(Run.id.not_in(exclude))
    with transaction(engine, write=False) as session:
        return session.scalar(query) or 0


def work(engine: Engine, options: WorkerOptions, *, say: Optional[Say] = None,
         progress: Optional[runs.Progress] = None) -> dict[str, Any]:
    """Drain the queue: claim, run, repeat; with `until_empty` stop when nothing is left
    this worker can run, with `max_jobs` after that many. Returns what it ran.

    Raises:
        LedgerError: a bad --gpu, a name another live worker has, an unreachable ledger.
    """
    check_gpu(options.gpu)
    if options.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = options.gpu  # before any job imports torch
    say = say or (lambda text: None)
    name = register(engine, options)
    say(f"worker {name} on {this_host()}" + (f", GPU {options.gpu}" if options.gpu else "")
        + (f", data {options.data}" if options.data else ""))
    done: list[dict[str, Any]] = []
    skipped: set[int] = set()
    try:
        with WorkerBeat(engine, name) as beat:
            while options.max_jobs is None or len(done) < options.max_jobs:
                run_id = claim(engine, name, options.gpu, options.data, skipped)
                if run_id is not None and run_id < 0:
                    with transaction(engine, write=False) as session:
                        row = session.get(Run, -run_id)
                        say(f"not running {row.name} here: {unfit(row, options.data)}")
                    continue
                if run_id is None:
                    if options.until_empty and waiting(engine, skipped) == 0:
                        break
                    time.sleep(options.poll_s)
                    continue
                beat.run_id, beat.cancelled = run_id, False
                done.append(_run_one(engine, run_id, name, options, beat, say, progress, skipped))
                beat.run_id = None
    finally:
        unregister(engine, name)
    return {"worker": name, "jobs": done}


def _run_one(engine: Engine, run_id: int, worker: str, options: WorkerOptions, beat: WorkerBeat, say: Say,
             progress: Optional[runs.Progress], skipped: set[int]) -> dict[str, Any]:
    from ledger import commands

    with transaction(engine, write=False) as session:
        row = session.get(Run, run_id)
        name, is_command = row.name, bool(row.command)
    say(f"{worker}: running {name}")
    try:
        if is_command:
            data = options.data if options.data and runs.profile_of(options.data) is None else None
            summary = commands.run_queued(engine, run_id, echo=options.echo, say=say, data=data)
        else:
            summary = runs.run_queued(engine, run_id, data=options.data, progress=progress, say=say)
        outcome = "finished"
    except RunInterrupted:
        if not beat.cancelled:
            raise  # the worker itself was stopped
        with transaction(engine) as session:
            row = session.get(Run, run_id)
            row.error = "cancelled while running (ledger queue cancel)"
        outcome, summary = "cancelled", {}
    except LedgerError as exc:
        outcome, summary = "failed", {"error": str(exc)}
        with transaction(engine, write=False) as session:
            if session.get(Run, run_id).status == "queued":  # put back: not for this worker
                skipped.add(run_id)
                outcome = "left for another worker"
    say(f"{worker}: {name} {outcome}" + (f" ({summary['error']})" if summary.get("error") else ""))
    return {"name": name, "outcome": outcome, **{k: v for k, v in summary.items() if k in ("val_miou", "metrics")}}
