"""The `ledger` command line: one module per group of commands, each registering on `app`.

Every command parses its options, calls one library function and prints; what a command
does, a notebook can do with the same function (see `ledger.runs`, `ledger.analysis`,
`ledger.store`). The read commands never import the training stack.

`app` is built on first use (`from ledger.cli import app`): `main` answers `--help`,
`--version`, `list` and `show` without Typer where it can (`ledger.cli.fast`).
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["app", "main"]


def _first_paragraph(doc: str) -> str:
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def _build() -> Any:
    """The Typer app with every command registered, in the order `ledger --help` lists them."""
    from ledger.cli import read, transfer, runs, queue, plot, analysis, edit  # noqa: F401,I001
    from ledger.cli.common import app

    # `ledger --help` lists each command with its whole first paragraph, not cut at 45 columns.
    for info in app.registered_commands:
        info.short_help = info.short_help or _first_paragraph(info.callback.__doc__)
    for group in app.registered_groups:
        group.short_help = group.short_help or _first_paragraph(group.help or group.typer_instance.info.help)
        for info in group.typer_instance.registered_commands:
            info.short_help = info.short_help or _first_paragraph(info.callback.__doc__)
    globals()["app"] = app
    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return _build()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    from ledger.cli.fast import answer

    code = answer(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    _build()()
