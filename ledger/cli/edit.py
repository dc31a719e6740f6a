"""`ledger set`: record what became known after a run, in one transaction."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ledger.cli.common import DbOption, JsonOption, app, console, print_json, user_errors


@app.command("set")
@user_errors
def set_cmd(
    run: Annotated[str, typer.Argument(help="The run's name.")],
    lb: Annotated[Optional[float], typer.Option("--lb", help="Leaderboard mIoU after submitting (0..1). Where the log keeps scores in its notes, 'lb mIoU : X' is appended to them too.")] = None,
    note: Annotated[Optional[str], typer.Option("--note", help="Text appended to the run's notes, after '. '.")] = None,
    link: Annotated[Optional[str], typer.Option("--link", help="A W&B run URL added to the run's links.")] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Record what became known after a run: its LB score, a note, a W&B link. One transaction;
    `ledger export` writes the change into the log."""
    from ledger.store.edits import set_run
    from ledger.store.db import open_ledger, transaction

    engine = open_ledger(db)
    with transaction(engine) as session:
        result = set_run(session, run, lb=lb, note=note, link=link)
    if as_json:
        print_json(result.to_dict())
        return
    from rich.text import Text

    text = Text(f"{result.run}: ")
    text.append(", ".join(result.changed) + " updated" if result.changed else "nothing changed")
    console(stderr=True).print(text)
