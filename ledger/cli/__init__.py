"""The `ledger` command line: one module per group of commands, each registering on `app`.

Every command parses its options, calls one library function and prints; what a command
does, a notebook can do with the same function (see `ledger.runs`, `ledger.analysis`,
`ledger.store`). The read commands never import the training stack.
"""

# Each module registers its commands on `app` when imported; `ledger --help` lists them
# in this order.
from ledger.cli import read, transfer, runs, queue, plot, analysis, edit  # noqa: F401,I001
from ledger.cli.common import app

__all__ = ["app", "main"]


def _first_paragraph(doc: str) -> str:
    return " ".join((doc or "").strip().split("\n\n")[0].split())


# `ledger --help` lists each command with its whole first paragraph, not cut at 45 columns.
for _info in app.registered_commands:
    _info.short_help = _info.short_help or _first_paragraph(_info.callback.__doc__)
for _group in app.registered_groups:
    _group.short_help = _group.short_help or _first_paragraph(_group.help or _group.typer_instance.info.help)
    for _info in _group.typer_instance.registered_commands:
        _info.short_help = _info.short_help or _first_paragraph(_info.callback.__doc__)


def main() -> None:
    app()
