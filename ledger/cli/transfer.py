"""`ledger import` and `ledger export`: the log in and out, Markdown, CSV or JSON."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ledger.cli.common import DbOption, JsonOption, app, console, print_json, user_errors
from ledger.core.errors import LedgerError


@app.command("import")
@user_errors
def import_cmd(
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="A Markdown log (.md), the CSV/JSON that `ledger export` writes, a W&B folder (wandb/, or one run-*/offline-run-* folder), W&B's runs CSV with --from wandb, or mlflow:STORE (mlflow:sqlite:///mlflow.db, mlflow:./mlruns).")],
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", metavar="md|csv|json", help="md, csv or json; default: from the file's extension.")] = None,
    from_: Annotated[Optional[str], typer.Option("--from", metavar="wandb", help="The CSV is W&B's runs table (config columns -> arguments, summary columns -> metrics).")] = None,
    experiment: Annotated[Optional[list[str]], typer.Option("--experiment", metavar="NAME", help="MLflow: import this experiment (repeatable); default: all.")] = None,
    name_column: Annotated[Optional[str], typer.Option("--name-column", metavar="COLUMN", help="The column that names a run, where its header does not say so. A table with no run-name column gets names derived from each row's model, encoder, date and W&B run id.")] = None,
    args_columns: Annotated[Optional[str], typer.Option("--args-columns", metavar="A,B,...", help="CSV/JSON of another tool: the columns that are arguments; the other columns with no role are kept as extra cells. Default: every column with no other role is an argument.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would change and write nothing, not even a new ledger file.")] = False,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Merge runs into the ledger: a log's rows by run name, a tracker's runs by their run id.

    Every table of runs in a Markdown document is read, each with the heading above it as
    its section; blank rows are skipped, score columns become metrics, and rows of a
    table with no run-name column get derived names (the document itself is not changed).
    Importing an updated version of the log (every row the ledger has, plus more)
    also makes it the document that `ledger export` writes. W&B and MLflow runs are
    merged by the tracker's run id: a re-import changes nothing, a run changed upstream is
    updated. The ledger is created if it does not exist. Nothing is written if any row is wrong.
    """
    if from_ is not None and from_ != "wandb":
        raise LedgerError(f"--from {from_!r}: the one CSV dialect known is wandb")
    path = Path(source)
    if source.startswith("mlflow:") or from_ == "wandb" or path.is_dir():
        from ledger.store.trackers import import_tracker

        if name_column or args_columns:
            raise LedgerError("--name-column and --args-columns apply to a log file (Markdown, CSV or JSON)")
        report = import_tracker(db, source, csv_from=from_, experiments=experiment or (), dry_run=dry_run)
        if as_json:
            print_json(report.to_dict())
            return
        from ledger.cli.views import import_report_view

        console(stderr=True).print(import_report_view(report))
        return
    if experiment:
        raise LedgerError("--experiment chooses MLflow experiments; give an mlflow: source")
    from ledger.store.importer import import_into

    columns = [c.strip() for c in args_columns.split(",") if c.strip()] if args_columns else None
    report = import_into(db, path, fmt=fmt, dry_run=dry_run, name_column=name_column, args_columns=columns)
    if as_json:
        print_json(report.to_dict())
        return
    from ledger.cli.views import import_report_view

    console(stderr=True).print(import_report_view(report))


@app.command("export")
@user_errors
def export_cmd(
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="md|csv|json", help="md (the log, byte for byte as imported), csv or json (one row per run, arguments as columns).")] = "md",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FILE", help="Write to this file instead of stdout.")] = None,
    include_failed: Annotated[bool, typer.Option("--include-failed", help="Also write runs that failed, were interrupted, or are queued or running into the Markdown log (CSV and JSON always carry them, with their status).")] = False,
    db: DbOption = None,
) -> None:
    """Write the ledger out: the Markdown log of the runs' results, or CSV/JSON of every run for pandas and scripts."""
    from ledger.store.export import EXPORT_FORMATS, export_to, write_export

    if fmt not in EXPORT_FORMATS:
        raise LedgerError(f"unknown format {fmt!r}; use one of: {', '.join(EXPORT_FORMATS)}")
    if output is not None:
        write_export(output, lambda fh: export_to(db, fmt, fh, include_failed=include_failed))
        return
    export_to(db, fmt, _Utf8(sys.stdout), include_failed=include_failed)
    sys.stdout.flush()


class _Utf8:
    """stdout as UTF-8 whatever the locale says, written a piece at a time."""

    def __init__(self, stream: Any):
        self.stream = stream

    def write(self, text: str) -> None:
        if hasattr(self.stream, "buffer"):
            self.stream.buffer.write(text.encode("utf-8"))
        else:
            self.stream.write(text)
