"""The calls typed most, answered without Typer: `--help`, `--version`, `list` and `show`.

Importing Typer costs more than a `list` at a million runs (it brings pydantic along), so
`ledger.cli.main` first offers the arguments here. What is answered here is exactly what
the Typer app answers: the list and show commands in `ledger.cli.read` call the same
functions below, the top-level help is the app's own text (`ledger.cli._help`, which a
test renders from the app and compares), and the options are read as click reads them.
Anything else (a subcommand's --help, an option this parser does not know, a value
Typer would refuse, a terminal narrower than the stored help, a command module changed
since the help was stored) goes to Typer, which answers it, errors included, as it always
did.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional

from ledger.core.errors import LedgerError

# The options of `ledger list` and `ledger show`, as `ledger.cli.read` declares them:
# option -> parameter; flags take no value.
LIST_OPTIONS = {"--where": "where", "-w": "where", "--sort": "sort", "-s": "sort", "--limit": "limit",
                "-n": "limit", "--search": "search", "-S": "search", "--db": "db"}
SHOW_OPTIONS = {"--db": "db"}
FLAGS = {"--json": "as_json"}
REPEATED = {"where"}
# The terminal width the stored help was rendered for: click wraps at min(columns, 80) - 2.
HELP_COLUMNS = 80


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def print_json(data: Any) -> None:
    """`data` as `json.dumps(data, ensure_ascii=False, indent=2, default=str)` writes it, and a newline."""
    from ledger.core.jsontext import dumps

    sys.stdout.write(dumps(data) + "\n")


def list_runs(*, where: list[str], sort: Optional[str], limit: Optional[int], search: Optional[str],
              as_json: bool, db: Optional[str]) -> None:
    """`ledger list`: the runs as a table, or --json."""
    from ledger.store.readers import reading
    from ledger.store.shapes import nest_children, run_listing

    with reading(db) as reader:
        if as_json and limit is None:
            # Every run that matches, a batch at a time: the same text, in memory that does not
            # grow with the matches on SQLite's read path.
            from ledger.core.jsontext import write_list

            batches = reader.iter_runs(where=where, sort=sort, search=search)
            write_list((item for batch in batches for item in run_listing(reader, batch)), sys.stdout.write)
            return
        runs = reader.list_runs(where=where, sort=sort, limit=limit, search=search)
        if as_json:
            print_json(run_listing(reader, runs))
            return
        from ledger.cli.views import runs_table

        rows = nest_children(runs) if not sort else [(run, 0) for run in runs]
        out = console()
        out.print(runs_table(rows, out.width))


def show_run(*, run: str, as_json: bool, db: Optional[str]) -> None:
    """`ledger show RUN`: one run, as a view, or --json."""
    from ledger.store.readers import reading
    from ledger.store.shapes import run_details

    with reading(db) as reader:
        details = run_details(reader.get_run(run))
    if as_json:
        print_json(details)
        return
    from ledger.cli.views import run_view

    console().print(run_view(details))


def answer(argv: list[str]) -> Optional[int]:
    """Answer `ledger ARGV` here and return the exit code, or None: Typer must answer it."""
    if argv == ["--version"]:
        from ledger import __version__

        sys.stdout.write(f"ledger {__version__}\n")
        return 0
    if argv in (["--help"], ["-h"]):
        from ledger.cli._help import SOURCES, TOP_HELP

        if _columns() < HELP_COLUMNS or SOURCES != sources_fingerprint():
            return None  # a narrow terminal, or a command's help changed since it was stored

        first, rest = TOP_HELP.split("\n", 1)
        sys.stdout.write(first.replace("Usage: ledger ", f"Usage: {_program_name()} ", 1) + "\n" + rest)
        return 0
    db_before, args = None, argv
    while args and (args[0] == "--db" or args[0].startswith("--db=")):
        if args[0] == "--db":
            if len(args) < 2:
                return None
            db_before, args = args[1], args[2:]
        else:
            db_before, args = args[0][len("--db="):], args[1:]
    if not args or args[0] not in ("list", "show"):
        return None
    command = args[0]
    parsed = _parse(args[1:], LIST_OPTIONS if command == "list" else SHOW_OPTIONS, 0 if command == "list" else 1)
    if parsed is None:
        return None
    values, positional = parsed
    try:
        limit = int(values["limit"]) if values.get("limit") is not None else None
    except ValueError:
        return None  # Typer says why
    from ledger.core import config

    config.set_db_before_command(db_before)
    try:
        if command == "list":
            list_runs(where=values.get("where", []), sort=values.get("sort"), limit=limit,
                      search=values.get("search"), as_json=values.get("as_json", False), db=values.get("db"))
        else:
            show_run(run=positional[0], as_json=values.get("as_json", False), db=values.get("db"))
    except LedgerError as exc:
        sys.stdout.flush()
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except BrokenPipeError:  # `ledger list | head`: as click does, quietly
        sys.stdout = open(os.devnull, "w")
        return 1
    return 0


def _parse(args: list[str], options: dict[str, str], positional: int) -> Optional[tuple[dict[str, Any], list[str]]]:
    """The options and arguments as click reads them, or None where this reader is unsure.

    `--opt VALUE`, `--opt=VALUE`, `-o VALUE`, `-oVALUE`; a repeated option keeps its last
    value (a `where` each of them); options and arguments in any order.
    """
    values: dict[str, Any] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name, value = arg, None
        if arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
        elif arg[:1] == "-" and arg[1:2] != "-" and len(arg) > 2:
            name, value = arg[:2], arg[2:]
        if name in FLAGS and value is None:
            values[FLAGS[name]] = True
        elif name in options:
            if value is None:
                if i + 1 >= len(args):
                    return None
                i += 1
                value = args[i]
            key = options[name]
            if key in REPEATED:
                values.setdefault(key, []).append(value)
            else:
                values[key] = value
        elif arg.startswith("-") and arg != "-":
            return None  # --help, --, an option of another command or a misspelt one
        else:
            rest.append(arg)
        i += 1
    if len(rest) != positional:
        return None
    return values, rest


def _columns() -> int:
    """The terminal's width as click reads it (`shutil.get_terminal_size`, without importing shutil)."""
    try:
        columns = int(os.environ.get("COLUMNS", 0))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def _program_name() -> str:
    """How the program was called, as click names it in `Usage:`: `ledger`, or `python -m ledger`."""
    main = sys.modules.get("__main__")
    package = getattr(main, "__package__", None)
    if not package:
        return os.path.basename(sys.argv[0])
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    module = package if name == "__main__" else f"{package}.{name}"
    return f"python -m {module.lstrip('.')}"


def sources_fingerprint() -> str:
    """A checksum of the command modules (`ledger/cli/*.py`), whose docstrings and options the
    top-level help is made of: the stored help is used only while they are as it was made from."""
    import zlib
    from pathlib import Path

    crc = 0
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.name != "_help.py":
            crc = zlib.crc32(path.name.encode() + path.read_bytes(), crc)
    return f"{crc:08x}"
