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
DataOption = Annotated[Optional[str], typer.Option("--data", "-d", metavar="demo|demo:tiny|PATH", help="'demo' for the bundled synthetic data set (CPU, minutes; its profile scales the job down, recorded as overrides), 'demo:tiny' for a seconds-long one, or the folder holding train.json/val.json and the images.")]
SetOption = Annotated[Optional[list[str]], typer.Option("--set", metavar="KEY=VALUE", help="Override a job field, KEY=VALUE (repeatable); unknown keys are errors that list the known ones.")]
WeightsOption = Annotated[Optional[Path], typer.Option("--weights", metavar="FILE", help="Local backbone weights to use instead of a download (its sha256 is recorded).")]
NoPretrainedOption = Annotated[bool, typer.Option("--no-pretrained", help="Start from random weights (recorded as an override).")]
DeviceOption = Annotated[Optional[str], typer.Option("--device", metavar="cpu|cuda|cuda:N", help="cpu, cuda or cuda:N; default: CUDA when present, else CPU.")]
FastOption = Annotated[bool, typer.Option("--fast", help="On a GPU: TF32, AMP and channels-last. Faster, not bit-exact; recorded.")]
WandbOption = Annotated[str, typer.Option("--wandb", metavar="auto|online|offline|disabled", help="auto (online with credentials, else offline), online, offline or disabled.")]
WandbProjectOption = Annotated[Optional[str], typer.Option("--wandb-project", metavar="NAME", help="W&B project of the new run; default: $WANDB_PROJECT, else 'ledger' (never the original author's).")]
WandbEntityOption = Annotated[Optional[str], typer.Option("--wandb-entity", metavar="NAME", help="W&B entity of the new run; default: $WANDB_ENTITY, else your own.")]
KeepLastOption = Annotated[bool, typer.Option("--keep-last", help="Keep last.pt (the state to resume from, several times the model's size) after the run finished.")]
RunsDirOption = Annotated[Optional[Path], typer.Option("--runs-dir", metavar="DIR", help="Where checkpoints go; default: $LEDGER_RUNS_DIR or ./reproductions.")]


def parse_sets(items: Optional[list[str]], raw: bool = False) -> dict[str, Any]:
    """`--set key=value` pairs; values are Python literals where they parse as one (`raw`:
    kept as written, for a command's arguments)."""
    from ledger.core.args import parse_value

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise LedgerError(f"--set {item!r}: write KEY=VALUE, e.g. --set lr=0.0002")
        out[key.strip()] = value if raw else parse_value(value)
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
    wandb_project: WandbProjectOption = None,
    wandb_entity: WandbEntityOption = None,
    runs_dir: RunsDirOption = None,
    repo: Annotated[Optional[Path], typer.Option("--repo", metavar="PATH", help="Command rows: the clone to rebuild the recorded commit from; default: where it was recorded.")] = None,
    keep_worktree: Annotated[bool, typer.Option("--keep-worktree", help="Command rows: keep the rebuilt git worktree after the run.")] = False,
    strict_env: Annotated[bool, typer.Option("--strict-env", help="Command rows: refuse when Python, the platform, the GPU or a package differs from the original's.")] = False,
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
    from ledger import commands, runs
    from ledger.store.db import open_ledger

    engine = open_ledger(db)
    if commands.has_command(engine, run) and not resume:
        overrides = parse_sets(set_, raw=True)
        if dry_run:
            plan = commands.planned_command(engine, run, overrides=overrides)
            print_json(plan) if as_json else console().print(plan["line"], markup=False, highlight=False)
            return
        _print_command_summary(commands.reproduce_command(
            engine, run, overrides=overrides, repo=repo, keep_worktree=keep_worktree, strict_env=strict_env,
            runs_dir=runs_dir, new_name=name, say=_terminal()["say"]), as_json)
        return
    explicit_seeds = runs.parse_seeds(seeds, repeats)
    if (repeats > 1 or explicit_seeds) and (resume or name):
        raise LedgerError("--repeats/--seeds start several new rows; they cannot be combined with --resume or --name")
    request = runs.Request(run=run, data=data, overrides=parse_sets(set_), weights=weights,
                           no_pretrained=no_pretrained, device=device, fast=fast, name=name, wandb_mode=wandb_mode,
                           wandb_project=wandb_project, wandb_entity=wandb_entity,
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
    command: Annotated[Optional[list[str]], typer.Argument(metavar="[-- CMD ARGS...]", help="Any command to run and record, after --.", show_default=False)] = None,
    from_: Annotated[Optional[str], typer.Option("--from", metavar="RUN", help="The row whose resolved job the new experiment starts from (the built-in recipe); with a command: the row it follows on.")] = None,
    data: DataOption = None,
    set_: SetOption = None,
    name: Annotated[Optional[str], typer.Option("--name", metavar="NAME", help="Name of the new run; default: FROM_forkN, or the script's name and a number.")] = None,
    env: Annotated[Optional[list[str]], typer.Option("--env", metavar="KEY", help="With a command: record the value of environment variable KEY (repeatable).")] = None,
    sweep: Annotated[Optional[list[str]], typer.Option("--sweep", metavar="KEY=V1,V2,...", help="With --from and --queue: one new experiment per value (several --sweep: every combination).")] = None,
    to_queue: Annotated[bool, typer.Option("--queue", help="Put the run(s) on the queue for `ledger worker`s instead of running here.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the job the new run would train; run nothing.")] = False,
    weights: WeightsOption = None,
    no_pretrained: NoPretrainedOption = False,
    device: DeviceOption = None,
    fast: FastOption = False,
    wandb_mode: WandbOption = "auto",
    wandb_project: WandbProjectOption = None,
    wandb_entity: WandbEntityOption = None,
    runs_dir: RunsDirOption = None,
    keep_last: KeepLastOption = False,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Start a new experiment: any command (`ledger run -- python train.py --lr 1e-4`), or a row's
    resolved job with your changes (`ledger run --from RUN --set lr=2e-4 --data demo`).

    A command row records the argv, the git commit and the full uncommitted change, the
    environment, the arguments read from the argv, the metrics the script reports with
    `ledger.log(step=..., name=value)` (through $LEDGER_METRICS_FILE), its output
    (output.log in its folder) and exit code; `ledger reproduce` runs it again at that
    commit. A --from row is a logged run of its own, with the job, its hash and per-epoch
    metrics recorded as for reproductions.
    """
    from ledger import runs
    from ledger.store.db import open_ledger

    if command:
        from ledger import commands

        if dry_run or data or set_ or weights or no_pretrained or device or fast or keep_last:
            raise LedgerError("a command row runs the command as given; --data, --set, --dry-run and the job "
                              "options are for --from RUN without a command")
        engine = open_ledger(db, create=True)  # a team's first own run may start the ledger
        request = commands.CommandRequest(argv=list(command), name=name, env_keys=tuple(env or ()),
                                          runs_dir=runs_dir, from_run=from_)
        _print_command_summary(commands.record_command(engine, request, say=_terminal()["say"]), as_json)
        return
    if not from_:
        raise LedgerError("say what to run: `ledger run -- CMD ARGS...` or `ledger run --from RUN ...`")
    if env:
        raise LedgerError("--env records variables of a command; give the command after --")
    if sweep and not to_queue:
        raise LedgerError("a sweep is several runs: add --queue, and start `ledger worker`s to run them")
    engine = open_ledger(db)
    if to_queue:
        from ledger import queue

        request = queue.QueueRequest(base=runs.Request(
            run=from_, data=data, overrides=parse_sets(set_), weights=weights, no_pretrained=no_pretrained,
            device=device, fast=fast, name=name, wandb_mode=wandb_mode, wandb_project=wandb_project,
            wandb_entity=wandb_entity, runs_dir=runs_dir, fork=True), sweep=queue.parse_sweeps(sweep))
        names = queue.add(engine, request)
        if as_json:
            print_json({"queued": names})
        else:
            console(stderr=True).print(f"queued {len(names)}: {', '.join(names)}", markup=False, highlight=False)
        return
    request = runs.Request(run=from_, data=data, overrides=parse_sets(set_), weights=weights,
                           no_pretrained=no_pretrained, device=device, fast=fast, name=name, wandb_mode=wandb_mode,
                           wandb_project=wandb_project, wandb_entity=wandb_entity,
                           runs_dir=runs_dir, fork=True, keep_last=keep_last)
    original, resolved = runs.plan(engine, request, check_data=dry_run)
    if dry_run:
        _print_job(original, resolved, as_json)
        return
    _print_summaries([runs.start(engine, request, resolved, **_terminal())], as_json)


def _print_command_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(summary)
        return
    err = console(stderr=True)
    say = lambda text: err.print(text, highlight=False, markup=False)  # noqa: E731
    metrics = ", ".join(f"{k} {v:.6g}" for k, v in summary["metrics"].items()) or "no metrics reported"
    say(f"{summary['name']}: {summary['status']} (exit code {summary['exit_code']}) in {summary['duration_s'] or 0:.1f} s; "
        f"{metrics}")
    for other in summary.get("same_job") or []:
        if not other["shared"]:
            say(f"no metric in common with {other['name']}")
        elif other["identical"]:
            say(f"agrees with {other['name']}: identical metrics, every step")
        else:
            verdict = "agrees with" if other["agrees"] else "differs from"
            say(f"{verdict} {other['name']}: final metrics differ by up to {other['max_abs_diff']:.3g}")
    say(f"output: {summary['output_log']}")


@app.command("attach")
@user_errors
def attach_cmd(
    run: Annotated[str, typer.Argument(metavar="RUN", help="The row to give its command.")],
    command: Annotated[str, typer.Option("--command", metavar="TEMPLATE", help="The command that trained it; {args} expands to the row's arguments as --key value.")],
    commit: Annotated[Optional[str], typer.Option("--commit", metavar="SHA", help="The commit it ran at; default: HEAD of --repo.")] = None,
    repo: Annotated[Optional[Path], typer.Option("--repo", metavar="PATH", help="The repository holding that code; default: the current one.")] = None,
    cwd: Annotated[str, typer.Option("--cwd", metavar="DIR", help="Folder inside the repository to run it from.")] = ".",
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Give an imported row the command and commit that trained it, so `ledger reproduce` can run it.

    Example: `ledger attach Focal+Dice+b5 --command "python train.py {args}" --commit 1a2b3c --repo ../teammate`.
    """
    from ledger import commands
    from ledger.store.db import open_ledger

    attached = commands.attach(open_ledger(db), run, template=command, commit=commit, repo=repo, cwd=cwd)
    if as_json:
        print_json(attached)
        return
    import shlex

    console(stderr=True).print(f"{attached['name']}: {shlex.join(attached['argv'])} at {attached['commit'][:12]} in "
                               f"{attached['repo']}; `ledger reproduce {attached['name']}` runs it", markup=False,
                               highlight=False)


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
        background, lb_background = summary.get("background_val_miou"), summary.get("background_lb_val_miou")
        if background is not None:
            learned = "this run learned no object class" if summary["val_miou"] <= background + 1e-4 else \
                f"best val mIoU is {summary['val_miou'] - background:+.4f} over it"
            err.print(f"predicting background everywhere scores val mIoU {background:.4f}, LB-style "
                      f"{lb_background:.4f} on this set: {learned}", highlight=False, markup=False)
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
