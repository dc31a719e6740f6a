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

from ledger.db import LedgerError

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
    from ledger.db import open_ledger, transaction
    from ledger.queries import list_runs, nest_children, run_summary

    engine = open_ledger(db)
    with transaction(engine) as session:
        runs = list_runs(session, where=where or [], sort=sort, limit=limit)
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
    from ledger.db import open_ledger, transaction
    from ledger.queries import get_run, run_details

    engine = open_ledger(db)
    with transaction(engine) as session:
        details = run_details(get_run(session, run))
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
    from ledger.db import open_ledger, transaction
    from ledger.export import EXPORT_FORMATS, export_flat, export_markdown

    if fmt not in EXPORT_FORMATS:
        raise LedgerError(f"unknown format {fmt!r}; use one of: {', '.join(EXPORT_FORMATS)}")
    engine = open_ledger(db)
    with transaction(engine) as session:
        text = export_markdown(session) if fmt == "md" else export_flat(session, fmt)
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
