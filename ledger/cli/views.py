"""Rich renderings of runs for the terminal. Log text is always wrapped in `Text`, never
parsed as markup, so a note saying `[bold]` prints as written.

A run here is an ORM `Run` or a `ledger.fastread` record: only attributes both have are read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Optional, Union

from rich.console import Group
from rich.table import Table
from rich.text import Text

from ledger.store.liveness import shown_status

if TYPE_CHECKING:
    from ledger.store.models import Run
    from ledger.store.sqlite_reader import RunSummary
    from reproduce.job import ResolvedJob

    AnyRun = Union[Run, RunSummary]


def fmt_score(value: Optional[float]) -> Text:
    return Text("—", style="dim") if value is None else Text(f"{value:.4f}")


# `ledger list` shows at most this many of the log's score columns (all are in --json).
LISTED_SCORES = 4


def runs_table(rows: Iterable[tuple[AnyRun, int]], width: Optional[int] = None) -> Table:
    """The runs, with a Section column where they come from several tables and a column for
    each of the first score columns their log has.

    `width`: the console's. Where every cell fits on one line of it, the columns are made
    no-wrap: rich then draws the same table without trying to wrap each cell (a third of
    `ledger list`'s drawing time)."""
    rows = list(rows)
    sections = {run.section for run, _ in rows}
    scores = list(dict.fromkeys(metric for run, _ in rows for metric in run.scores or {}))[:LISTED_SCORES]
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    if len(sections) > 1:
        table.add_column(Text("Section"), overflow="fold")
    table.add_column(Text("Date"), no_wrap=True)
    longest = max((len(run.name) + 2 * depth for run, depth in rows), default=3)
    table.add_column(Text("Run"), overflow="fold", min_width=min(longest, 24) if scores or len(sections) > 1 else None)
    table.add_column(Text("Model"), overflow="fold")
    table.add_column(Text("LB mIoU"), justify="right", no_wrap=True)
    table.add_column(Text("val mIoU"), justify="right", no_wrap=True)
    for metric in scores:
        table.add_column(Text(metric), justify="right", no_wrap=True)
    table.add_column(Text("Status"), no_wrap=True)
    grid: list[list[Text]] = []
    for run, depth in rows:
        name = Text("  " * (depth - 1) + "└ " if depth else "")
        name.append(run.name, style="cyan" if run.kind == "reproduction" else "")
        shown = shown_status(run)
        status = Text(shown or "", style=_STATUS_STYLE.get(shown or "", ""))
        cells = [Text(run.section or "")] if len(sections) > 1 else []
        cells += [Text(run.date or ""), name, Text(run.model or ""), fmt_score(run.lb_miou), fmt_score(run.val_miou)]
        cells += [fmt_score((run.scores or {}).get(metric)) for metric in scores]
        table.add_row(*cells, status)
        grid.append([*cells, status])
    if width is not None and _fits_unwrapped(table, grid, width):
        for column in table.columns:
            column.no_wrap = True
    return table


def _fits_unwrapped(table: Table, grid: list[list[Text]], width: int) -> bool:
    """Whether the table, every cell on one line, is narrower than `width`: counted high
    (full padding on the edges too), and only for printable text, whose width is its cells'."""
    from rich.cells import cell_len

    needed = len(table.columns) - 1  # the rules between columns
    for k, column in enumerate(table.columns):
        texts = [column.header, *(row[k] for row in grid)]
        if not all(isinstance(t, Text) and t.plain.isprintable() for t in texts):
            return False
        needed += max(max(cell_len(t.plain) for t in texts), column.min_width or 0) + 2
    return needed <= width


_STATUS_STYLE = {"finished": "green", "failed": "red", "interrupted": "yellow", "running": "blue", "queued": "dim",
                 "stale": "bold yellow"}


def _job_facts(details: dict[str, Any]) -> list[tuple[str, str]]:
    """One line each for the job, its conflicts, the environment and the data of a run ledger ran."""
    from ledger.store.jobrecord import JobRecord

    facts = []
    record = JobRecord.from_json(details.get("job"))
    if record is not None:
        job = record.job
        overridden = sorted(record.overridden())
        facts.append(("Job", f"{job.get('model')} on {job.get('backbone')}, code state {job.get('code_state')}, "
                             f"{job.get('num_epochs')} epochs at {job.get('image_size')}px"
                             + (f"; overridden: {', '.join(overridden)}" if overridden else "")))
        for conflict in record.conflicts:
            facts.append(("Conflict", f"{conflict['field']}={conflict['chosen']!r} ({conflict['chosen_source']}) "
                                      f"over {conflict['alternative']!r} ({conflict['alternative_source']})"))
        if record.forked_from:
            facts.append(("Forked from", str(record.forked_from)))
    command = details.get("command") or {}
    if command.get("argv"):
        import shlex

        facts.append(("Command", shlex.join(command["argv"]) + f"  (in {command.get('cwd') or '.'})"))
        git = command.get("git") or {}
        if git:
            change = ""
            if git.get("dirty"):
                files = len(git.get("untracked") or {})
                change = f" + uncommitted change ({len(git.get('diff') or '')} bytes of diff, {files} untracked files)"
            facts.append(("Commit", f"{git.get('commit', '')[:12]}{change} of {git.get('root')}"
                                    + (f", branch {git['branch']}" if git.get("branch") else "")
                                    + (f", remote {git['remote']}" if git.get("remote") else "")))
            changed = [line.split(" b/", 1)[-1] for line in (git.get("diff") or "").splitlines()
                       if line.startswith("diff --git ")]
            if changed or git.get("untracked"):
                facts.append(("Changed", ", ".join(changed + [f"{p} (untracked)" for p in git.get("untracked") or {}])
                              + "  (the full change: show --json, command.git)"))
        else:
            facts.append(("Commit", "none: not recorded in a git repository, so it cannot be rebuilt"))
        if command.get("exit_code") is not None:
            facts.append(("Exit code", str(command["exit_code"])))
        if command.get("overrides"):
            facts.append(("Overrides", ", ".join(f"{k}={v}" for k, v in command["overrides"].items())))
    env = details.get("environment") or {}
    if env and "distributions" in env:
        gpus = ", ".join(env.get("gpu") or []) or "no GPU"
        facts.append(("Environment", f"Python {env.get('python')}, {env.get('platform')}, {gpus}, "
                                     f"{len(env.get('distributions') or {})} packages"
                                     + "".join(f", {k}={v}" for k, v in (env.get("env") or {}).items())))
    elif env:
        git = env.get("git") or {}
        commit = (git.get("commit") or "unknown")[:12] + (" (dirty tree)" if git.get("dirty") else "")
        device = env.get("device") or "?"
        gpus = ", ".join(env.get("gpu") or []) or "no GPU"
        facts.append(("Environment", f"Python {env.get('python')}, torch {env.get('torch')}, {device} ({gpus}), "
                                     f"ledger commit {commit}"))
    data = details.get("data_fingerprint") or {}
    if data:
        splits = ", ".join(f"{name} {info.get('sha256', '')[:10]} ({info.get('images')} images)"
                           for name, info in (data.get("splits") or {}).items())
        facts.append(("Data", splits))
    return facts


def attempts_table(attempts: list[dict[str, Any]]) -> Table:
    table = Table(title=Text("Attempts", style="table.title"), title_justify="left", show_edge=False,
                  header_style="bold")
    for column in ("#", "started (UTC)", "host", "pid", "from epoch", "seconds", "outcome"):
        table.add_column(Text(column), justify="right" if column in ("#", "pid", "from epoch", "seconds") else "left")
    for a in attempts:
        started = (a.get("started_at") or "")[:19].replace("T", " ")
        seconds = a.get("duration_s")
        cells = [str(a.get("n", "")), started or "-", str(a.get("host") or "-"), str(a.get("pid") or "-"),
                 str(a.get("from_epoch") or "-"), f"{seconds:.1f}" if seconds is not None else "-",
                 str(a.get("outcome") or "-")]
        table.add_row(*map(Text, cells))  # text from the ledger, never markup
    return table


def run_view(details: dict[str, Any]) -> Group:
    parts: list[Any] = []
    head = Text(details["name"], style="bold")
    head.append(f"  {details['kind']}", style="dim")
    if details.get("parent"):
        head.append(f"  reproduces {details['parent']}", style="cyan")
    parts.append(head)

    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    if details.get("name_derived"):
        head.append("  (name derived from the row's cells: its table has no run-name column)", style="dim")
    for label, key in (("Section", "section"), ("Date", "date"), ("Model", "model"), ("Status", "status"),
                       ("LB mIoU", "lb_miou"),
                       ("val mIoU", "val_miou"), ("val mIoU (LB metric)", "lb_val_miou"), ("Job hash", "job_hash"),
                       ("Duration (s)", "duration_s"), ("Checkpoint", "checkpoint_path"), ("Error", "error"),
                       ("Stale", "stale_reason"),
                       ("Source", "source")):
        value = details.get(key)
        if value is None:
            continue
        if key == "source" and details.get("source_row"):
            value = f"{value}, row {details['source_row']}"
        elif key in ("lb_miou", "val_miou", "lb_val_miou"):
            value = f"{value:.4f}"
        elif key == "duration_s":
            attempts = details.get("attempts") or []
            value = f"{value:.1f}" + (f" over {len(attempts)} attempts" if len(attempts) > 1 else "")
        facts.add_row(Text(label), Text(str(value)))
    for label, value in _job_facts(details):
        facts.add_row(Text(label), Text(value))
    for link in details.get("links") or []:
        facts.add_row(Text("W&B"), Text(link, style="link " + link if link.startswith("http") else ""))
    for child in details.get("children") or []:
        facts.add_row(Text("Reproduced by"), Text(child))
    if details.get("tags"):
        facts.add_row(Text("Tags"), Text(", ".join(details["tags"])))
    kinds = details.get("score_kinds") or {}
    for metric, value in (details.get("scores") or {}).items():
        shown = "— (no number in the cell)" if value is None else f"{value:g}"
        facts.add_row(Text(metric), Text(f"{shown}  ({kinds.get(metric, 'score')})"))
    for header, value in (details.get("extra_columns") or {}).items():
        facts.add_row(Text(header), Text(value))
    parts.append(facts)

    if len(details.get("attempts") or []) > 1:
        parts.append(attempts_table(details["attempts"]))

    args = details.get("arguments")
    if args:
        title = "Arguments (read from free text: keys and values as written)" \
            if details.get("args_status") == "loose" else "Arguments"
        table = Table(title=Text(title, style="table.title"), title_justify="left", show_edge=False,
                      header_style="bold")
        table.add_column(Text("key"))
        table.add_column(Text("value"), overflow="fold")
        for key in sorted(args):
            table.add_row(Text(key), Text(repr(args[key])))
        parts.append(table)
    elif details.get("args_status") == "unparsed":
        parts.append(Text(f"Arguments (not parsed: {details.get('args_error')}):", style="yellow"))
        parts.append(Text(details.get("arguments_raw") or ""))
    else:
        parts.append(Text("Arguments: none recorded", style="dim"))

    parts.append(Text("Notes", style="bold"))
    parts.append(Text(details.get("notes") or "—"))

    series = details.get("metrics") or {}
    if series:
        table = Table(title=Text("Metrics (last value; best: the lowest loss, the highest score)", style="table.title"),
                      title_justify="left", show_edge=False, header_style="bold")
        table.add_column(Text("metric"))
        table.add_column(Text("points"), justify="right")
        table.add_column(Text("last"), justify="right")
        table.add_column(Text("best"), justify="right")
        for name, points in series.items():
            values = [p["value"] for p in points]
            best = min(values) if "loss" in name.lower() else max(values)
            table.add_row(Text(name), Text(str(len(values))), Text(f"{values[-1]:.4f}"), Text(f"{best:.4f}"))
        parts.append(table)
    return Group(*parts)


def import_report_view(report: Any) -> Text:
    """What an import did: a log's (`ImportReport`) or a tracker's (`TrackerReport`)."""
    verb = "would import" if report.dry_run else "imported"
    tracker = getattr(report, "tracker", None)
    text = Text(f"{verb} {report.source}" + (f" ({tracker})" if tracker else "") + ": ")
    text.append(f"{len(report.added)} added", style="green")
    text.append(", ")
    text.append(f"{len(report.changed)} changed", style="yellow")
    text.append(f", {len(report.unchanged)} unchanged")
    if tracker:
        text.append(f", {len(report.skipped)} skipped")
        text.append("\n  mapped: " + "; ".join(f"{k} -> {v}" for k, v in report.mapped.items()))
    if getattr(report, "layout", "kept") != "kept":
        text.append(f"; document layout {report.layout}")
    if getattr(report, "new_columns", None):
        text.append(f"; new columns: {', '.join(report.new_columns)}")
    for label, names in (("added", report.added), ("changed", report.changed)):
        for name in names:
            text.append(f"\n  {label}: ")
            text.append(name)
    for item in getattr(report, "skipped", None) or []:
        text.append("\n  skipped: ")
        text.append(f"{item['run']} ({item['why']})")
    for table in getattr(report, "tables", None) or []:
        _table_report(text, table)
    return text


def _table_report(text: Text, table: Any) -> None:
    """One table of an import: its runs, skipped rows, derived names, columns and argument cells."""
    where = f"table at line {table.line}" + (f" ({table.section})" if table.section else "")
    text.append(f"\n  {where}: {len(table.runs)} runs: {table.added} added, {table.changed} changed, "
                f"{table.unchanged} unchanged")
    if table.skipped:
        reasons: dict[str, int] = {}
        for item in table.skipped:
            reasons[item["why"]] = reasons.get(item["why"], 0) + 1
        text.append(", skipped " + ", ".join(f"{n} {why}" for why, n in reasons.items()))
    if table.derived_names:
        text.append(f"; {table.derived_names} names derived from the cells")
    text.append("\n    columns: " + "; ".join(f"{h} -> {role}" for h, role in table.columns.items()))
    if table.arguments:
        forms = f" ({', '.join(f'{n} {form}' for form, n in table.forms.items())})" if table.forms else ""
        text.append("\n    argument cells: " + ", ".join(f"{n} {status}" for status, n in table.arguments.items())
                    + forms)
    if table.unread_dates:
        text.append("\n    dates kept as text (not a date): " + ", ".join(table.unread_dates[:5])
                    + (f" and {len(table.unread_dates) - 5} more" if len(table.unread_dates) > 5 else ""))


_SOURCE_STYLE = {"recorded": "green", "code-state": "cyan", "notes": "magenta", "default": "dim", "override": "yellow"}


def job_table(run: str, resolved: ResolvedJob) -> Group:
    """`ledger reproduce --dry-run`: each field of the job with its source, then the conflicts."""
    from reproduce.resolve import provenance_rows

    table = Table(title=Text(f"job for {run} (hash {resolved.job.hash()[:12]})"), title_justify="left",
                  show_edge=False, header_style="bold")
    table.add_column(Text("field"))
    table.add_column(Text("value"), overflow="fold")
    table.add_column(Text("source"))
    table.add_column(Text("from"), overflow="fold")
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


def summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title=Text(f"{summary['name']}: finished"), title_justify="left", show_edge=False,
                  header_style="bold")
    for column in ("epoch", "train loss", "val loss", "val mIoU", "LB-style mIoU", "seconds"):
        table.add_column(column, justify="right")
    table.caption = "* best val mIoU   c checkpoint kept"
    for e in summary["epochs"]:
        mark = (" *" if e["epoch"] == summary["best_epoch"] else "") + \
               (" c" if e["epoch"] == summary["checkpoint_epoch"] else "")
        table.add_row(f"{e['epoch']}{mark}", f"{e['train_loss']:.4f}", f"{e['val_loss']:.4f}", f"{e['val_miou']:.4f}",
                      f"{e['lb_val_miou']:.4f}", f"{e['seconds']:.1f}")
    return table
