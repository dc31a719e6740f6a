"""The `ledger` command line: parses options, calls the library, prints.

The ledger commands never import the training stack; `reproduce`, `run` and `plot`
import it inside the command.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from ledger.errors import LedgerError

app = typer.Typer(
    name="ledger",
    help="An ML team's experiment log as a database: list, show, import/export, reproduce and compare runs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)

DbOption = Annotated[
    Optional[str],
    typer.Option("--db", help="Ledger database: a SQLAlchemy URL or a SQLite path. Default: $LEDGER_DB, else ./runs.db."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print plain JSON to stdout instead of a table.")]


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def fail(message: str, code: int = 1) -> None:
    """One clear line on stderr and a non-zero exit; never a traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LedgerError as exc:
            fail(str(exc))

    return wrapper


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


@app.command("list")
@user_errors
def list_cmd(
    where: Annotated[
        Optional[list[str]],
        typer.Option("--where", "-w", help="Filter KEY OP VALUE on a column or parsed argument; OP is = != > >= < <= or ~ (contains). Repeatable: all must hold. Example: --where lr=0.0001 --where 'lb_miou>0.6'."),
    ] = None,
    sort: Annotated[Optional[str], typer.Option("--sort", "-s", help="Sort by a column or argument; prefix with - for descending (e.g. -lb_miou).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", help="At most N runs: the newest N in ledger order, or the first N of --sort.")] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """List the runs, oldest first, with reproductions under the run they reproduce."""
    from ledger.fastread import nest_children, reading, run_summary

    with reading(db) as reader:
        runs = reader.list_runs(where=where or [], sort=sort, limit=limit)
        if as_json:
            print_json([run_summary(run) for run in runs])
            return
        from ledger.views import runs_table

        rows = nest_children(runs) if not sort else [(run, 0) for run in runs]
        _console().print(runs_table(rows))


@app.command("show")
@user_errors
def show_cmd(
    run: Annotated[str, typer.Argument(help="The run's name, as in the log's Run Name column.")],
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Everything about one run: arguments, notes verbatim, links, scores, job and metrics."""
    from ledger.fastread import reading, run_details

    with reading(db) as reader:
        details = run_details(reader.get_run(run))
    if as_json:
        print_json(details)
        return
    from ledger.views import run_view

    _console().print(run_view(details))


@app.command("import")
@user_errors
def import_cmd(
    file: Annotated[Path, typer.Argument(help="A Markdown log (.md), or the CSV/JSON that `ledger export` writes.")],
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="md, csv or json; default: from the file's extension.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would change and write nothing.")] = False,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Merge a log into the ledger: new rows are added, changed rows updated, by run name.

    Importing an updated version of the log (every row the ledger has, plus more)
    also makes it the document that `ledger export` writes. The ledger is created if
    it does not exist. Nothing is written if any row is wrong.
    """
    from ledger.db import open_ledger, resolve_url, sqlite_path, transaction
    from ledger.importer import import_file

    path = sqlite_path(resolve_url(db))
    existed = path is None or path.exists()
    try:
        engine = open_ledger(db, create=True)
        with transaction(engine) as session:
            report = import_file(session, file, fmt=fmt, dry_run=dry_run)
            if dry_run:
                session.rollback()
    except BaseException:
        if not existed and path is not None:
            _remove_sqlite(path)
        raise
    if as_json:
        print_json(report.to_dict())
        return
    from ledger.views import import_report_view

    _console(stderr=True).print(import_report_view(report))


def _remove_sqlite(path: Path) -> None:
    """A ledger file this command created and could not fill is not left behind."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)


@app.command("export")
@user_errors
def export_cmd(
    fmt: Annotated[str, typer.Option("--format", "-f", help="md (the log, byte for byte as imported), csv or json (one row per run, arguments as columns).")] = "md",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
    db: DbOption = None,
) -> None:
    """Write the ledger out: the Markdown log with every run, or CSV/JSON for pandas and scripts."""
    from ledger.export import EXPORT_FORMATS, export_markdown
    from ledger.fastread import reading

    if fmt not in EXPORT_FORMATS:
        raise LedgerError(f"unknown format {fmt!r}; use one of: {', '.join(EXPORT_FORMATS)}")
    if fmt == "md":
        from ledger.db import open_ledger, transaction

        with transaction(open_ledger(db)) as session:
            text = export_markdown(session)
    else:
        with reading(db) as reader:
            text = reader.export_flat(fmt)
    if output is None:
        sys.stdout.buffer.write(text.encode("utf-8")) if hasattr(sys.stdout, "buffer") else sys.stdout.write(text)
        sys.stdout.flush()
        return
    tmp = output.with_name(output.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        tmp.replace(output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LedgerError(f"cannot write {output}: {exc.strerror}") from None


def parse_sets(items: Optional[list[str]]) -> dict[str, Any]:
    """`--set key=value` pairs; values are Python literals where they parse as one."""
    from ledger.args import parse_value

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
    run: Annotated[str, typer.Argument(help="The row to reproduce (with --resume: the interrupted reproduction).")],
    data: Annotated[Optional[str], typer.Option("--data", "-d", help="'demo' for the bundled synthetic data set (CPU, minutes; scales the job down, recorded as overrides), or the folder holding train.json/val.json and the images.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved job with each value's source and the conflicts; run nothing.")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a job field, KEY=VALUE (repeatable); unknown keys are errors that list the known ones.")] = None,
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Local backbone weights to use instead of a download (its sha256 is recorded).")] = None,
    no_pretrained: Annotated[bool, typer.Option("--no-pretrained", help="Start from random weights (recorded as an override).")] = False,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda or cuda:N; default: CUDA when present, else CPU.")] = None,
    fast: Annotated[bool, typer.Option("--fast", help="On a GPU: TF32, AMP and channels-last. Faster, not bit-exact; recorded.")] = False,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Run with another seed (recorded as an override).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted reproduction RUN from its last finished epoch.")] = False,
    repeats: Annotated[int, typer.Option("--repeats", help="Run N reproductions as siblings, to measure seed noise (see `ledger history`).")] = 1,
    seeds: Annotated[Optional[str], typer.Option("--seeds", help="Comma-separated seeds for --repeats (default: the job's seed, then seed+1, ...).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Name of the new row; default: RUN_reproN.")] = None,
    wandb_mode: Annotated[str, typer.Option("--wandb", help="auto (online with credentials, else offline), online, offline or disabled.")] = "auto",
    runs_dir: Annotated[Optional[Path], typer.Option("--runs-dir", help="Where checkpoints go; default: $LEDGER_RUNS_DIR or ./reproductions.")] = None,
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
    from ledger.db import open_ledger, transaction
    from reproduce.runner import Request, resolve_request

    engine = open_ledger(db)
    explicit_seeds = _parse_seeds(seeds, repeats)
    if (repeats > 1 or explicit_seeds) and (resume or name):
        raise LedgerError("--repeats/--seeds start several new rows; they cannot be combined with --resume or --name")
    request = Request(run=run, data=data, overrides=parse_sets(set_), weights=weights, no_pretrained=no_pretrained,
                      device=device, fast=fast, name=name, wandb_mode=wandb_mode, runs_dir=runs_dir,
                      seed=explicit_seeds[0] if explicit_seeds else seed)
    if resume:
        _print_summaries([_resume(engine, run, wandb_mode)], as_json)
        return
    with transaction(engine) as session:
        original, resolved = resolve_request(session, request)
    if dry_run:
        _print_job(original.name, resolved, as_json)
        return
    if repeats == 1 and len(explicit_seeds) <= 1:
        _print_summaries([_run_new(engine, request, resolved)], as_json)
        return
    # Seed repeats: the given seeds, or the job's seed and the ones after it; the first
    # keeps the job's own seed unless another was asked for.
    seed_list = explicit_seeds or [resolved.job.seed + i for i in range(repeats)]
    summaries = []
    for index, one_seed in enumerate(seed_list):
        if one_seed != resolved.job.seed:
            request.seed = one_seed
            with transaction(engine) as session:
                original, resolved = resolve_request(session, request)
        summaries.append(_run_new(engine, request, resolved))
    _print_summaries(summaries, as_json)


def _parse_seeds(seeds: Optional[str], repeats: int) -> list[int]:
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


def _print_job(name: str, resolved: Any, as_json: bool) -> None:
    if as_json:
        print_json(resolved.to_dict())
        return
    from reproduce.views import job_view

    _console().print(job_view(name, resolved))


def _print_summaries(summaries: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json(summaries[0] if len(summaries) == 1 else summaries)
        return
    from reproduce.progress import summary_table

    console = _console(stderr=True)
    for summary in summaries:
        console.print(summary_table(summary))
        console.print(f"best val mIoU {summary['val_miou']:.4f} (LB-style {summary['lb_val_miou']:.4f}) at epoch "
                      f"{summary['best_epoch']}; checkpoint {summary['checkpoint']}", highlight=False, markup=False)
        for link in summary.get("links") or []:
            console.print(f"W&B: {link}", highlight=False, markup=False)


@app.command("run")
@user_errors
def run_cmd(
    from_: Annotated[str, typer.Option("--from", help="The row whose resolved job the new experiment starts from.")],
    data: Annotated[Optional[str], typer.Option("--data", "-d", help="'demo' for the bundled synthetic data set, or the data folder.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Change a job field, KEY=VALUE (repeatable); unknown keys are errors that list the known ones.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Name of the new run; default: FROM_forkN.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the job the new run would train; run nothing.")] = False,
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Local backbone weights instead of a download.")] = None,
    no_pretrained: Annotated[bool, typer.Option("--no-pretrained", help="Start from random weights.")] = False,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda or cuda:N; default: CUDA when present.")] = None,
    fast: Annotated[bool, typer.Option("--fast", help="On a GPU: TF32, AMP and channels-last (not bit-exact).")] = False,
    wandb_mode: Annotated[str, typer.Option("--wandb", help="auto, online, offline or disabled.")] = "auto",
    runs_dir: Annotated[Optional[Path], typer.Option("--runs-dir", help="Where checkpoints go; default: $LEDGER_RUNS_DIR or ./reproductions.")] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Start a new experiment from a row: its resolved job with your changes, run and logged.

    The new row is a logged run of its own (not a reproduction): the ledger is where new
    work starts, with the job, its hash and per-epoch metrics recorded as for reproductions.
    """
    from ledger.db import open_ledger, transaction
    from reproduce.runner import Request, resolve_request

    engine = open_ledger(db)
    request = Request(run=from_, data=data, overrides=parse_sets(set_), weights=weights, no_pretrained=no_pretrained,
                      device=device, fast=fast, name=name, wandb_mode=wandb_mode, runs_dir=runs_dir, fork=True)
    with transaction(engine) as session:
        original, resolved = resolve_request(session, request)
    if dry_run:
        _print_job(original.name, resolved, as_json)
        return
    _print_summaries([_run_new(engine, request, resolved)], as_json)


def _prepare_model(job: Any) -> Any:
    from reproduce.models import WeightsUnavailable
    from reproduce.train import build_seeded_model

    try:
        return build_seeded_model(job)
    except (WeightsUnavailable, FileNotFoundError, ValueError) as exc:
        raise LedgerError(str(exc)) from None


def _run_new(engine: Any, request: Any, resolved: Any) -> dict[str, Any]:
    from ledger.db import transaction
    from ledger.queries import get_run
    from reproduce.data import DataError, data_fingerprint, validate_data_dir
    from reproduce.runner import append_reproduction, data_dir_for, runs_dir

    job = resolved.job
    data_dir = data_dir_for(request.data, job)
    try:
        validate_data_dir(data_dir)
    except DataError as exc:
        raise LedgerError(str(exc)) from None
    fingerprint = data_fingerprint(data_dir)
    # Built before the row is appended: missing weights are an error that leaves no trace.
    model = _prepare_model(job)
    with transaction(engine) as session:
        original = get_run(session, request.run)
        row = append_reproduction(session, original, resolved, name=request.name, data=request.data,
                                  data_dir=data_dir, fingerprint=fingerprint, run_dir_root=runs_dir(request.runs_dir),
                                  fork=request.fork)
        run_id, run_dir, new_name = row.id, Path(row.job["run_dir"]), row.name
    verb = "starting a run from" if request.fork else "reproducing"
    _console(stderr=True).print(f"{verb} {request.run} as {new_name} (job {job.hash()[:12]}) in {run_dir}",
                                highlight=False, markup=False)
    return _execute(engine, run_id, job, data_dir, run_dir, model, request.wandb_mode, new_name, resume=False)


def _resume(engine: Any, name: str, wandb_mode: str) -> dict[str, Any]:
    from ledger.db import transaction
    from reproduce.runner import load_for_resume

    with transaction(engine) as session:
        run, job, run_dir, data_dir = load_for_resume(session, name)
        run_id = run.id
    model = _prepare_model(job)
    _console(stderr=True).print(f"resuming {name} from {run_dir / 'last.pt'}", highlight=False, markup=False)
    return _execute(engine, run_id, job, data_dir, run_dir, model, wandb_mode, name, resume=True)


def _execute(engine: Any, run_id: int, job: Any, data_dir: Path, run_dir: Path, model: Any, wandb_mode: str,
             name: str, *, resume: bool) -> dict[str, Any]:
    from reproduce.data import DataError
    from reproduce.progress import ProgressDisplay
    from reproduce.runner import execute

    try:
        with ProgressDisplay(_console(stderr=True), job.num_epochs) as display:
            return execute(engine, run_id, job, data_dir, run_dir, model=model, wandb_mode=wandb_mode,
                           display=display, resume=resume)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: {name} is marked interrupted; continue it with `ledger reproduce {name} --resume`",
                   err=True)
        raise typer.Exit(130)
    except DataError as exc:
        raise LedgerError(f"{name} failed: {exc}") from None
    except Exception as exc:
        raise LedgerError(f"{name} failed: {exc.__class__.__name__}: {exc} (status recorded as failed)") from None


@app.command("plot")
@user_errors
def plot_cmd(
    runs: Annotated[Optional[list[str]], typer.Argument(help="Runs whose per-epoch curves to draw; none: the LB score of every logged run.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path("scores.png"),
    db: DbOption = None,
) -> None:
    """Draw the log: scores over the runs, each point labelled by its change; or epoch curves of RUNs."""
    from ledger.db import open_ledger, transaction
    from ledger.plots import plot_curves, plot_scores

    engine = open_ledger(db)
    with transaction(engine) as session:
        result = plot_curves(session, runs, output) if runs else plot_scores(session, output)
    typer.echo(f"wrote {result['output']}", err=True)


# Commands defined in their own modules register themselves on `app`.
import ledger.cli_analysis  # noqa: E402,F401


def main() -> None:
    app()


if __name__ == "__main__":
    main()
