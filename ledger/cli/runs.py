"""`ledger reproduce` and `ledger run --from`: parse, call `ledger.runs`, print.

The training stack is imported by `ledger.runs` when a job starts, never by `--help`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ledger.cli.common import DbOption, JsonOption, app, console, print_json, user_errors
from ledger.core.errors import LedgerError

# Options both commands take, declared once.
DataOption = Annotated[Optional[str], typer.Option("--data", "-d", metavar="demo|PATH", help="'demo' for the bundled synthetic data set (CPU, minutes; scales the job down, recorded as overrides), or the folder holding train.json/val.json and the images.")]
SetOption = Annotated[Optional[list[str]], typer.Option("--set", metavar="KEY=VALUE", help="Override a job field, KEY=VALUE (repeatable); unknown keys are errors that list the known ones.")]
WeightsOption = Annotated[Optional[Path], typer.Option("--weights", metavar="FILE", help="Local backbone weights to use instead of a download (its sha256 is recorded).")]
NoPretrainedOption = Annotated[bool, typer.Option("--no-pretrained", help="Start from random weights (recorded as an override).")]
DeviceOption = Annotated[Optional[str], typer.Option("--device", metavar="cpu|cuda|cuda:N", help="cpu, cuda or cuda:N; default: CUDA when present, else CPU.")]
FastOption = Annotated[bool, typer.Option("--fast", help="On a GPU: TF32, AMP and channels-last. Faster, not bit-exact; recorded.")]
WandbOption = Annotated[str, typer.Option("--wandb", metavar="auto|online|offline|disabled", help="auto (online with credentials, else offline), online, offline or disabled.")]
KeepLastOption = Annotated[bool, typer.Option("--keep-last", help="Keep last.pt (the state to resume from, several times the model's size) after the run finished.")]
RunsDirOption = Annotated[Optional[Path], typer.Option("--runs-dir", metavar="DIR", help="Where checkpoints go; default: $LEDGER_RUNS_DIR or ./reproductions.")]


def parse_sets(items: Optional[list[str]]) -> dict[str, Any]:
    """`--set key=value` pairs; values are Python literals where they parse as one."""
    from ledger.core.args import parse_value

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise LedgerError(f"--set {item!r}: write KEY=VALUE, e.g. --set lr=0.0002")
        out[key.strip()] = parse_value(value)
    return out


@app.command("reproduce")
@user_errors
def reproduce_cmd(
    run: Annotated[str, typer.Argument(metavar="RUN", help="The row to reproduce (with --resume: the interrupted reproduction).")],
    data: DataOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved job with each value's source and the conflicts; run nothing.")] = False,
    set_: SetOption = None,
    weights: WeightsOption = None,
    no_pretrained: NoPretrainedOption = False,
    device: DeviceOption = None,
    fast: FastOption = False,
    seed: Annotated[Optional[int], typer.Option("--seed", metavar="N", help="Run with another seed (recorded as an override).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted reproduction RUN from its last finished epoch.")] = False,
    repeats: Annotated[int, typer.Option("--repeats", metavar="N", help="Run N reproductions as siblings, to measure seed noise (see `ledger history`).")] = 1,
    seeds: Annotated[Optional[str], typer.Option("--seeds", metavar="N,N,...", help="Comma-separated seeds for --repeats (default: the job's seed, then seed+1, ...).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", metavar="NAME", help="Name of the new row; default: RUN_reproN.")] = None,
    wandb_mode: WandbOption = "auto",
    runs_dir: RunsDirOption = None,
    keep_last: KeepLastOption = False,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Rebuild the exact training job of a row, run it, and append the result as a new row.

    The row's recorded arguments are resolved with the code of its date (T_max, scheduler
    stepping, backbone, augmentations, focal gamma, input scaling) into a complete job;
    --dry-run shows it. The new row is linked to the original, moves queued -> running ->
    finished | failed | interrupted, and keeps the job, its hash, the environment, the
    data's fingerprint, per-epoch metrics and the best checkpoint.
    """
    from ledger import runs
    from ledger.store.db import open_ledger

    engine = open_ledger(db)
    explicit_seeds = runs.parse_seeds(seeds, repeats)
    if (repeats > 1 or explicit_seeds) and (resume or name):
        raise LedgerError("--repeats/--seeds start several new rows; they cannot be combined with --resume or --name")
    request = runs.Request(run=run, data=data, overrides=parse_sets(set_), weights=weights,
                           no_pretrained=no_pretrained, device=device, fast=fast, name=name, wandb_mode=wandb_mode,
                           runs_dir=runs_dir, seed=explicit_seeds[0] if explicit_seeds else seed, keep_last=keep_last)
    if resume:
        _print_summaries([runs.resume(engine, run, wandb_mode=wandb_mode, keep_last=keep_last, **_terminal())],
                         as_json)
        return
    original, resolved = runs.plan(engine, request, check_data=dry_run)
    if dry_run:
        _print_job(original, resolved, as_json)
        return
    if repeats == 1 and len(explicit_seeds) <= 1:
        _print_summaries([runs.start(engine, request, resolved, **_terminal())], as_json)
        return
    seed_list = runs.repeat_seeds(resolved, repeats, explicit_seeds)
    _print_summaries(runs.start_repeats(engine, request, resolved, seed_list, **_terminal()), as_json)


@app.command("run")
@user_errors
def run_cmd(
    from_: Annotated[str, typer.Option("--from", metavar="RUN", help="The row whose resolved job the new experiment starts from.")],
    data: DataOption = None,
    set_: SetOption = None,
    name: Annotated[Optional[str], typer.Option("--name", metavar="NAME", help="Name of the new run; default: FROM_forkN.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the job the new run would train; run nothing.")] = False,
    weights: WeightsOption = None,
    no_pretrained: NoPretrainedOption = False,
    device: DeviceOption = None,
    fast: FastOption = False,
    wandb_mode: WandbOption = "auto",
    runs_dir: RunsDirOption = None,
    keep_last: KeepLastOption = False,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Start a new experiment from a row: its resolved job with your changes, run and logged.

    The new row is a logged run of its own (not a reproduction): the ledger is where new
    work starts, with the job, its hash and per-epoch metrics recorded as for reproductions.
    """
    from ledger import runs
    from ledger.store.db import open_ledger

    engine = open_ledger(db)
    request = runs.Request(run=from_, data=data, overrides=parse_sets(set_), weights=weights,
                           no_pretrained=no_pretrained, device=device, fast=fast, name=name, wandb_mode=wandb_mode,
                           runs_dir=runs_dir, fork=True, keep_last=keep_last)
    original, resolved = runs.plan(engine, request, check_data=dry_run)
    if dry_run:
        _print_job(original, resolved, as_json)
        return
    _print_summaries([runs.start(engine, request, resolved, **_terminal())], as_json)


def _terminal() -> dict[str, Any]:
    """A progress bar per epoch and the one-line notices, on stderr."""
    from reproduce.progress import ProgressDisplay

    err = console(stderr=True)
    return {
        "progress": lambda num_epochs: ProgressDisplay(err, num_epochs),
        "say": lambda text: err.print(text, highlight=False, markup=False),
    }


def _print_job(name: str, resolved: Any, as_json: bool) -> None:
    if as_json:
        print_json(resolved.to_dict())
        return
    from ledger.cli.views import job_table

    console().print(job_table(name, resolved))


def _print_summaries(summaries: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json(summaries[0] if len(summaries) == 1 else summaries)
        return
    from ledger.cli.views import summary_table

    err = console(stderr=True)
    for summary in summaries:
        err.print(summary_table(summary))
        err.print(f"best val mIoU {summary['val_miou']:.4f} at epoch {summary['best_epoch']} (best LB-style "
                  f"{summary['lb_val_miou']:.4f}); checkpoint: epoch {summary['checkpoint_epoch']}, chosen by "
                  f"{summary['checkpoint_rule']} (val mIoU {summary['checkpoint_val_miou']:.4f}), "
                  f"{summary['checkpoint']}", highlight=False, markup=False)
        err.print(f"run folder {summary['run_dir']}: {summary['run_dir_bytes'] / 2**20:.1f} MiB", highlight=False,
                  markup=False)
        for other in summary.get("same_job") or []:
            if other["identical"]:
                verdict = "identical metrics, every epoch"
            elif other["max_abs_diff"] is None:
                verdict = "no epoch in common"
            else:
                verdict = f"metrics differ by up to {other['max_abs_diff']:.3g}"
            err.print(f"{'agrees with' if other['identical'] else 'differs from'} {other['name']} (the same job): "
                      f"{verdict}", highlight=False, markup=False)
        for link in summary.get("links") or []:
            err.print(f"W&B: {link}", highlight=False, markup=False)
