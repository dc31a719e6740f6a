"""`ledger queue` (status, add, cancel) and `ledger worker`: parse, call `ledger.queue`, print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ledger.cli.common import DbOption, JsonOption, app, console, print_json, user_errors
from ledger.cli.runs import DataOption, RunsDirOption, SetOption, WandbOption, parse_sets
from ledger.core.errors import LedgerError

queue_app = typer.Typer(help="The ledger as a queue of jobs that workers drain: what is queued, running, stale, by whom.",
                        no_args_is_help=False, rich_markup_mode=None)
app.add_typer(queue_app, name="queue")

SweepOption = Annotated[Optional[list[str]], typer.Option("--sweep", metavar="KEY=V1,V2,...", help="Queue one job per value (several --sweep: every combination).")]


@queue_app.callback(invoke_without_command=True)
@user_errors
def queue_cmd(ctx: typer.Context, as_json: JsonOption = False, db: DbOption = None) -> None:
    """What is queued, running, stale, and finished in the last 24 h: worker, GPU, epoch, age; the workers.

    Subcommands: `ledger queue add RUN ...`, `ledger queue cancel NAME...`.
    """
    if ctx.invoked_subcommand is not None:
        return
    from ledger import queue
    from ledger.store.db import open_ledger

    state = queue.status(open_ledger(db, read_only=True))
    if as_json:
        print_json(state)
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False, header_style="bold")
    for column in ("run", "status", "worker", "GPU", "epoch", "attempts", "age"):
        table.add_column(column, justify="right" if column in ("epoch", "attempts", "age") else "left")
    for item in state["runs"]:
        status = item["status"] + (" (cancel asked)" if item["cancel"] else "")
        table.add_row(Text(item["name"]), status, Text(item["worker"] or "—"), item["gpu"] or "—",
                      str(item["epoch"] or "—"), str(item["attempts"]), _age(item["age_s"]))
    out = console()
    out.print(table if state["runs"] else "nothing queued, running or recently finished")
    for worker in state["workers"]:
        out.print(Text(f"worker {worker['name']}: pid {worker['pid']} on {worker['host']}"
                       + (f", GPU {worker['gpu']}" if worker["gpu"] else "")
                       + f", heartbeat {worker['heartbeat_s']:.0f} s ago"))


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@queue_app.command("add")
@user_errors
def add_cmd(
    run: Annotated[str, typer.Argument(metavar="RUN", help="The row to reproduce (a command row: its command at its commit).")],
    data: DataOption = None,
    set_: SetOption = None,
    sweep: SweepOption = None,
    repeats: Annotated[int, typer.Option("--repeats", metavar="N", help="N jobs on consecutive seeds (the job's seed first).")] = 1,
    seeds: Annotated[Optional[str], typer.Option("--seeds", metavar="N,N,...", help="The seeds of the repeats.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", metavar="NAME", help="Name of the row (with --sweep: the stem of the names).")] = None,
    fork: Annotated[bool, typer.Option("--fork", help="Queue new experiments forked from RUN (as `ledger run --from`), not reproductions.")] = False,
    max_attempts: Annotated[int, typer.Option("--max-attempts", metavar="N", help="Fail a job after N attempts (a worker died each time).")] = 3,
    no_pretrained: Annotated[bool, typer.Option("--no-pretrained", help="Start from random weights (recorded as an override).")] = False,
    wandb_mode: WandbOption = "auto",
    runs_dir: RunsDirOption = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Queue reproductions of RUN (or, with --fork, new experiments from it) for workers to run."""
    from ledger import queue, runs
    from ledger.store.db import open_ledger

    engine = open_ledger(db)
    seed_list = runs.parse_seeds(seeds, repeats)
    overrides = parse_sets(set_, raw=True) if _is_command(engine, run) else parse_sets(set_)
    request = queue.QueueRequest(
        base=runs.Request(run=run, data=data, overrides=overrides, name=name, no_pretrained=no_pretrained,
                          wandb_mode=wandb_mode, runs_dir=runs_dir, fork=fork),
        sweep=queue.parse_sweeps(sweep), repeats=repeats, seeds=tuple(seed_list), max_attempts=max_attempts)
    names = queue.add(engine, request)
    if as_json:
        print_json({"queued": names})
        return
    console(stderr=True).print(f"queued {len(names)}: {', '.join(names)}", markup=False, highlight=False)


def _is_command(engine: Any, run: str) -> bool:
    from ledger import commands

    return commands.has_command(engine, run)


@queue_app.command("cancel")
@user_errors
def cancel_cmd(
    names: Annotated[list[str], typer.Argument(metavar="NAME...", help="Queued or running rows to cancel.")],
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Cancel queued rows (they never run) and running ones (their worker stops them within seconds)."""
    from ledger import queue
    from ledger.store.db import open_ledger

    done = queue.cancel(open_ledger(db), names)
    if as_json:
        print_json(done)
        return
    for item in done:
        console(stderr=True).print(f"{item['run']}: {item['now']}", markup=False, highlight=False)


@app.command("worker")
@user_errors
def worker_cmd(
    gpu: Annotated[Optional[str], typer.Option("--gpu", metavar="N", help="Run every job on GPU N (sets CUDA_VISIBLE_DEVICES).")] = None,
    data: Annotated[Optional[str], typer.Option("--data", metavar="PATH", help="The data folder of this machine; jobs queued on other data are left for other workers.")] = None,
    until_empty: Annotated[bool, typer.Option("--until-empty", help="Exit when nothing is left that this worker can run.")] = False,
    max_jobs: Annotated[Optional[int], typer.Option("--max-jobs", metavar="N", help="Exit after N jobs.", min=1)] = None,
    name: Annotated[Optional[str], typer.Option("--name", metavar="NAME", help="This worker's name; default HOST-PID.")] = None,
    poll: Annotated[float, typer.Option("--poll", metavar="S", help="Seconds between looks at an empty queue.", min=0.05)] = 2.0,
    quiet: Annotated[bool, typer.Option("--quiet", help="Do not echo the jobs' output (it is in each run's output.log).")] = False,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Drain the queue: claim the oldest job this worker can run, run it, repeat (one per GPU per machine).

    Claims are one transaction each (PostgreSQL: SELECT ... FOR UPDATE SKIP LOCKED; SQLite:
    its write lock), so no two workers ever run the same row. A job whose worker died is
    put back on the queue and resumed from its last checkpoint by another worker.
    """
    from ledger import queue
    from ledger.cli.runs import _terminal
    from ledger.store.db import open_ledger

    if data is not None and not data.startswith("demo") and not Path(data).expanduser().is_dir():
        raise LedgerError(f"--data {data}: no such folder")
    terminal = _terminal()
    options = queue.WorkerOptions(name=name, gpu=gpu, data=data, until_empty=until_empty, max_jobs=max_jobs,
                                  poll_s=poll, echo=not quiet)
    result = queue.work(open_ledger(db), options, say=terminal["say"], progress=None if quiet else terminal["progress"])
    if as_json:
        print_json(result)
