"""`ledger list` and `ledger show`: the read commands, on the stdlib sqlite3 path where they can.

Their bodies live in `ledger.cli.fast`, which also answers them without Typer when
`ledger` is run from the shell; the options here are what both read.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ledger.cli.fast import list_runs, show_run
from ledger.cli.common import DbOption, JsonOption, app, user_errors


@app.command("list")
@user_errors
def list_cmd(
    where: Annotated[
        Optional[list[str]],
        typer.Option("--where", "-w", metavar="KEY<OP>VALUE", help="Filter KEY OP VALUE on a column or parsed argument; OP is = != > >= < <= or ~ (contains). Repeatable: all must hold. Example: --where lr=0.0001 --where 'lb_miou>0.6'."),
    ] = None,
    sort: Annotated[Optional[str], typer.Option("--sort", "-s", metavar="[-]KEY", help="Sort by a column or argument; prefix with - for descending (e.g. -lb_miou).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", metavar="N", help="At most N runs: the newest N in ledger order, or the first N of --sort.")] = None,
    search: Annotated[Optional[str], typer.Option("--search", "-S", metavar="TEXT", help="Only runs whose name, notes or arguments contain TEXT (any case).")] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """List the runs, oldest first, with reproductions under the run they reproduce."""
    list_runs(where=where or [], sort=sort, limit=limit, search=search, as_json=as_json, db=db)


@app.command("show")
@user_errors
def show_cmd(
    run: Annotated[str, typer.Argument(metavar="RUN", help="The run's name, as in the log's Run Name column.")],
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Everything about one run: arguments, notes verbatim, links, scores, job and metrics."""
    show_run(run=run, as_json=as_json, db=db)
