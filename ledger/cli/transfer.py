"""`ledger import` and `ledger export`: the log in and out, Markdown, CSV or JSON."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ledger.cli.common import DbOption, JsonOption, app, console, print_json, user_errors


@app.command("import")
@user_errors
def import_cmd(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A Markdown log (.md), or the CSV/JSON that `ledger export` writes.")],
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", metavar="md|csv|json", help="md, csv or json; default: from the file's extension.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would change and write nothing.")] = False,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Merge a log into the ledger: new rows are added, changed rows updated, by run name.

    Importing an updated version of the log (every row the ledger has, plus more)
    also makes it the document that `ledger export` writes. The ledger is created if
    it does not exist. Nothing is written if any row is wrong.
    """
    from ledger.store.importer import import_into

    report = import_into(db, file, fmt=fmt, dry_run=dry_run)
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
    include_failed: Annotated[bool, typer.Option("--include-failed", help="Also write runs that failed or were interrupted into the Markdown log (CSV and JSON always carry them, with their status).")] = False,
    db: DbOption = None,
) -> None:
    """Write the ledger out: the Markdown log of the runs' results, or CSV/JSON of every run for pandas and scripts."""
    from ledger.store.export import export_text, write_file

    text = export_text(db, fmt, include_failed=include_failed)
    if output is not None:
        write_file(output, text)
        return
    sys.stdout.buffer.write(text.encode("utf-8")) if hasattr(sys.stdout, "buffer") else sys.stdout.write(text)
    sys.stdout.flush()
