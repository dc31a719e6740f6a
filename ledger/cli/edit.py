"""`ledger set`, `rename`, `rm`, `tag` and `untag`: edits to runs, each one transaction.

`ledger export` writes every edit into the log: a new score where the log keeps it, a
renamed row under its new name, a removed run's row gone.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable, Optional

import typer

from ledger.cli.common import DbOption, JsonOption, app, console, print_json, user_errors


def _edit(db: Optional[str], work: Callable[[Any], Any]) -> Any:
    from ledger.store.db import open_ledger, transaction

    with transaction(open_ledger(db)) as session:
        return work(session)


def _report(result: Any, as_json: bool, text: str) -> None:
    if as_json:
        print_json(result.to_dict())
        return
    from rich.text import Text

    console(stderr=True).print(Text(text))


@app.command("set")
@user_errors
def set_cmd(
    run: Annotated[str, typer.Argument(metavar="RUN", help="The run's name.")],
    lb: Annotated[Optional[float], typer.Option("--lb", metavar="SCORE", help="Leaderboard mIoU after submitting (0..1); replaces the run's score. Where the log keeps scores in its notes, their 'lb mIoU : X' is replaced (or appended) too.")] = None,
    clear_lb: Annotated[bool, typer.Option("--clear-lb", help="Remove the run's leaderboard score (and the notes' 'lb mIoU : X').")] = False,
    note: Annotated[Optional[str], typer.Option("--note", metavar="TEXT", help="Text appended to the run's notes, after '. ', unless the notes already hold it.")] = None,
    notes: Annotated[Optional[str], typer.Option("--notes", metavar="TEXT", help="Text that replaces the run's notes.")] = None,
    clear_notes: Annotated[bool, typer.Option("--clear-notes", help="Empty the run's notes.")] = False,
    link: Annotated[Optional[str], typer.Option("--link", metavar="URL", help="A W&B run URL added to the run's links.")] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Record what became known after a run: its LB score, a note, a W&B link. One transaction;
    `ledger export` writes the change into the log."""
    from ledger.store.edits import set_run

    result = _edit(db, lambda s: set_run(s, run, lb=lb, clear_lb=clear_lb, note=note, notes=notes,
                                         clear_notes=clear_notes, link=link))
    _report(result, as_json, f"{result.run}: " + (", ".join(result.changed) + " updated" if result.changed
                                                   else "nothing changed"))


@app.command("rename")
@user_errors
def rename_cmd(
    old: Annotated[str, typer.Argument(metavar="OLD", help="The run's name now.")],
    new: Annotated[str, typer.Argument(metavar="NEW", help="Its new name: unique, no path separators or control characters.")],
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Rename a run; its links, reproductions, tags and place in the log stay."""
    from ledger.store.edits import rename_run

    result = _edit(db, lambda s: rename_run(s, old, new))
    _report(result, as_json, f"{result.run}: {result.detail}")


@app.command("rm")
@user_errors
def rm_cmd(
    run: Annotated[str, typer.Argument(metavar="RUN", help="The run to remove, with its metrics and tags.")],
    with_reproductions: Annotated[bool, typer.Option("--with-reproductions", help="Also remove the reproductions of the run (refused without it when there are any).")] = False,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Remove a run from the ledger (and from the exported log); refused while reproductions point at it."""
    from ledger.store.edits import remove_run

    result = _edit(db, lambda s: remove_run(s, run, with_reproductions=with_reproductions))
    _report(result, as_json, f"{result.run}: {result.detail}")


@app.command("tag")
@user_errors
def tag_cmd(
    run: Annotated[str, typer.Argument(metavar="RUN", help="The run to label.")],
    tags: Annotated[list[str], typer.Argument(metavar="TAG", help="One or more tags, e.g. best-lb; `ledger list --where tag=best-lb` finds the run.")],
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Label a run with tags; a tag it already has is no change."""
    from ledger.store.edits import tag_run

    result = _edit(db, lambda s: tag_run(s, run, tags))
    _report(result, as_json, f"{result.run}: {result.detail}")


@app.command("untag")
@user_errors
def untag_cmd(
    run: Annotated[str, typer.Argument(metavar="RUN", help="The run.")],
    tags: Annotated[list[str], typer.Argument(metavar="TAG", help="The tags to take off.")],
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Take tags off a run; a tag it does not have is no change."""
    from ledger.store.edits import tag_run

    result = _edit(db, lambda s: tag_run(s, run, tags, remove=True))
    _report(result, as_json, f"{result.run}: {result.detail}")
