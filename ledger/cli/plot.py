"""`ledger plot`: the log as a PNG. matplotlib is imported by the plot functions alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ledger.cli.common import DbOption, app, user_errors


@app.command("plot")
@user_errors
def plot_cmd(
    runs: Annotated[Optional[list[str]], typer.Argument(metavar="RUN", help="Runs whose per-epoch curves to draw; none: the LB score of every logged run.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", metavar="FILE.png", help="PNG file to write.")] = Path("scores.png"),
    metric: Annotated[Optional[str], typer.Option("--metric", metavar="NAME", help="Without RUNs: draw one of the log's score columns (e.g. miou_latest) instead of the LB score.")] = None,
    db: DbOption = None,
) -> None:
    """Draw the log: scores over the runs, each point labelled by its change; or epoch curves of RUNs."""
    from ledger.core.errors import LedgerError

    if runs and metric:
        raise LedgerError("--metric picks the score drawn over the log; with RUNs, their epoch curves are drawn")
    from ledger.analysis.plots import plot_curves, plot_scores
    from ledger.store.db import open_ledger, transaction

    engine = open_ledger(db, read_only=True)
    with transaction(engine, write=False) as session:
        result = plot_curves(session, runs, output) if runs else plot_scores(session, output, metric)
    typer.echo(f"wrote {result['output']}", err=True)
