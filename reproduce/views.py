"""How a resolved job is shown by `ledger reproduce --dry-run`."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from reproduce.job import ResolvedJob
from reproduce.resolve import provenance_rows

_SOURCE_STYLE = {"recorded": "green", "code-state": "cyan", "notes": "magenta", "default": "dim", "override": "yellow"}


def job_view(run: str, resolved: ResolvedJob) -> Group:
    table = Table(title=Text(f"job for {run} (hash {resolved.job.hash()[:12]})"), title_justify="left",
                  show_edge=False, header_style="bold")
    table.add_column("field")
    table.add_column("value", overflow="fold")
    table.add_column("source")
    table.add_column("from", overflow="fold")
    for field, value, source, detail in provenance_rows(resolved):
        table.add_row(Text(field), Text(repr(value)), Text(source, style=_SOURCE_STYLE.get(source, "")), Text(detail))
    parts = [table]
    if resolved.conflicts:
        conflicts = Table(title="conflicts between the notes and the code", title_justify="left", show_edge=False,
                          header_style="bold")
        for column in ("field", "chosen", "other", "why", "to take the other"):
            conflicts.add_column(column, overflow="fold")
        for c in resolved.conflicts:
            conflicts.add_row(Text(c.field), Text(f"{c.chosen!r} ({c.chosen_source})"),
                              Text(f"{c.alternative!r} ({c.alternative_source})"), Text(c.why), Text(c.override_hint()))
        parts.append(conflicts)
    return Group(*parts)
