"""What every command shares: the app, common options, the console, and error mapping.

Commands parse their options, call one library function and print. Heavy modules (the
store, rich, the training stack) are imported inside the commands that need them.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Callable, Optional

import typer

from ledger.analysis import DEFAULT_TOL
from ledger.cli.fast import console, print_json  # noqa: F401  (every command module prints with these)
from ledger.core.errors import LedgerError, RunInterrupted

app = typer.Typer(
    name="ledger",
    help="An ML team's experiment log as a database: list, show, import/export, reproduce and compare runs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

DB_HELP = "Ledger database: a SQLAlchemy URL or a SQLite path. Default: $LEDGER_DB, else ./runs.db."
DbOption = Annotated[Optional[str], typer.Option("--db", metavar="URL|PATH", help=DB_HELP)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print plain JSON to stdout instead of a table.")]
FormatOption = Annotated[
    str, typer.Option("--format", "-f", metavar="table|md", help="table (for the terminal) or md (a Markdown table to paste into a PR or README).")
]
TolOption = Annotated[
    float,
    typer.Option("--tol", metavar="MIOU", help=f"Largest absolute mIoU difference that still agrees (default {DEFAULT_TOL}).", min=0.0),
]


def _version(value: bool) -> None:
    if value:
        from ledger import __version__

        typer.echo(f"ledger {__version__}")
        raise typer.Exit()


@app.callback()
def _before_the_command(
    db: DbOption = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    # Options before the command: `ledger --db URL list` reads that ledger.
    from ledger.core import config

    config.set_db_before_command(db)
TABLE_FORMATS = ("table", "md")


def fail(message: str, code: int = 1) -> None:
    """One clear line on stderr and a non-zero exit; never a traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Errors a user can act on end the command with one line on stderr."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RunInterrupted as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(130)
        except LedgerError as exc:
            fail(str(exc))

    return wrapper


def output_format(fmt: str, as_json: bool) -> str:
    """"json", "table" or "md" from `--format` and `--json`."""
    if fmt not in TABLE_FORMATS:
        raise LedgerError(f"unknown format {fmt!r}; use one of: {', '.join(TABLE_FORMATS)}")
    if as_json and fmt != "table":
        raise LedgerError("pass either --json or --format md, not both")
    return "json" if as_json else fmt
