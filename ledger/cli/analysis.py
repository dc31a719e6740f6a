"""`ledger compare`, `history` and `check`: parse, call `ledger.analysis`, print.

Tables are built from `Text` so that names and notes from the log print literally.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from ledger.analysis import DEFAULT_TOL
from ledger.cli.common import (
    DbOption,
    FormatOption,
    JsonOption,
    TolOption,
    app,
    console,
    output_format,
    print_json,
    user_errors,
)


def _value(value: Any, present: bool = True) -> str:
    return repr(value) if present else "—"


def _score(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.4f}"


def _delta(value: Optional[float]) -> str:
    return "" if value is None else f"{value:+.4f}"


# --------------------------------------------------------------------- compare


def _comparison_rows(cmp: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(section, label, one cell per run) rows, shared by the terminal and Markdown tables."""
    n = len(cmp["runs"])
    rows: list[tuple[str, str, list[str]]] = []
    for item in cmp["arguments"]:
        rows.append(("arguments", item["key"], [_value(v, p) for v, p in zip(item["values"], item["present"])]))
    errors = [r["job_error"] for r in cmp["runs"]]
    if any(errors):
        rows.append(("job", "cannot resolve", [e or "" for e in errors]))
    for item in cmp["job"]:
        cells = []
        for value, source, error in zip(item["values"], item["sources"], errors):
            cells.append("" if error else f"{_value(value)} ({source})" if source else _value(value))
        rows.append(("job", item["field"], cells))
    for item in cmp["command"]:
        rows.append(("command", item["key"], ["—" if v is None else str(v) for v in item["values"]]))
    for item in cmp["metrics"]:
        cells = [_score(v) + (f" ({_delta(d)})" if d is not None else "") for v, d in zip(item["values"], item["deltas"])]
        rows.append(("metrics", item["label"], cells))
    if any(cmp["repeats"]):
        cells = []
        for group, check in zip(cmp["repeats"], cmp["repeat_deltas"]):
            if group is None:
                cells.append("—")
                continue
            text = f"n={group['n']} mean {group['mean']:.4f}"
            if group["std"] is not None:
                text += f" ± {group['std']:.4f}"
            if check is not None:
                verdict = "exceeds" if check["exceeds"] else "within"
                text += f"; Δ {check['delta']:+.4f} {verdict} spread {check['spread']:.4f}"
            cells.append(text)
        rows.append(("repeats", "val mIoU", cells))
    for section, items in (("environment", cmp["environment"]), ("data", cmp["data"])):
        for item in items:
            rows.append((section, item["key"], ["—" if v is None else str(v) for v in item["values"]]))
    assert all(len(cells) == n for _, _, cells in rows)
    return rows


def _agreement_lines(cmp: dict[str, Any]) -> list[str]:
    lines = []
    for a in cmp["agreements"]:
        parts = []
        for m in a["metrics"]:
            verdict = "within" if m["within_tol"] else "outside"
            parts.append(f"{m['metric']} {m['reproduction']:.4f} vs {m['original']:.4f} ({m['delta']:+.4f}, {verdict} ±{cmp['tol']:g})")
        if not a["metrics"]:
            parts.append("no score recorded on both")
        if a["same_job"] is True:
            parts.append("same job hash")
        elif a["same_job"] is False and a["differing_fields"] and set(a["differing_fields"]) <= {"command", "cwd", "commit", "change"}:
            over = ", ".join(a["overridden"])
            parts.append(f"{', '.join(a['differing_fields'])} differ" + (f" (overridden: {over})" if over else ""))
        elif a["same_job"] is False:
            fields = ", ".join(a["differing_fields"]) or "none"
            over = ", ".join(a["overridden"])
            parts.append(f"job differs in {fields}" + (f" (overridden: {over})" if over else ""))
        if a["same_data"] is not None:
            parts.append("same data" if a["same_data"] else "different data")
        verdict = {True: "agrees", False: "does not agree", None: "cannot be told to agree"}[a["agrees"]]
        lines.append(f"{a['reproduction']} {verdict} with {a['original']}: " + "; ".join(parts))
    return lines


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """Plain-text cells as a compact GFM table, `|` and line breaks escaped."""
    from ledger.core.markdown import Table, escape_cell, render_table

    table = Table(headers=[escape_cell(h) for h in header], aligns=["---"] * len(header),
                  rows=[[escape_cell(c) for c in row] for row in rows], aligned=False)
    return render_table(table)


def _compare_markdown(cmp: dict[str, Any]) -> str:
    header = ["", *(r["name"] for r in cmp["runs"])]
    body = []
    section = None
    for sec, label, cells in _comparison_rows(cmp):
        if sec != section:
            body.append([f"**{sec}**", *[""] * len(cells)])
            section = sec
        body.append([label, *cells])
    text = _markdown_table(header, body)
    lines = _agreement_lines(cmp)
    if lines:
        from ledger.core.markdown import escape_cell

        text += "\n" + "".join(f"- {escape_cell(line)}\n" for line in lines)
    return text


def _compare_table(cmp: dict[str, Any]) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    table.add_column("")
    for run in cmp["runs"]:
        table.add_column(Text(run["name"]), overflow="fold")
    section = None
    for sec, label, cells in _comparison_rows(cmp):
        if sec != section:
            if section is not None:
                table.add_section()
            table.add_row(Text(sec, style="bold"), *[Text("")] * len(cells))
            section = sec
        table.add_row(Text(label), *[Text(c) for c in cells])
    parts: list[Any] = [table]
    for line, a in zip(_agreement_lines(cmp), cmp["agreements"]):
        parts.append(Text(line, style={True: "green", False: "yellow"}.get(a["agrees"], "")))
    return Group(*parts)


@app.command("compare")
@user_errors
def compare_cmd(
    runs: Annotated[list[str], typer.Argument(metavar="RUN", help="Two or more run names; deltas are against the first.")],
    all_fields: Annotated[bool, typer.Option("--all", help="Show every argument and job field, not only those that differ.")] = False,
    tol: TolOption = DEFAULT_TOL,
    fmt: FormatOption = "table",
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Compare runs: the arguments and resolved-job fields that differ, score deltas, and for
    reproductions the environment, data and whether each agrees with its original."""
    from ledger.analysis.compare import compare_runs
    from ledger.store.db import open_ledger, transaction

    out = output_format(fmt, as_json)
    engine = open_ledger(db, read_only=True)
    with transaction(engine, write=False) as session:
        cmp = compare_runs(session, runs, all_fields=all_fields, tol=tol).to_dict()
    if out == "json":
        print_json(cmp)
    elif out == "md":
        typer.echo(_compare_markdown(cmp), nl=False)
    else:
        console().print(_compare_table(cmp))


# --------------------------------------------------------------------- history


def _changes_text(entry: dict[str, Any]) -> str:
    if entry["kind"] == "reproduction":
        if entry["job_error"]:
            return f"reproduction: {entry['job_error']}"
        overrides = entry["overrides"] or {}
        return "reproduction" + (" with " + ", ".join(f"{k}={_value(v)}" for k, v in overrides.items()) if overrides else "")
    parts = []
    if entry["argument_changes"]:
        parts.append("args: " + ", ".join(
            f"{c['key']} {_value(c['before'], c['present'][0])}→{_value(c['after'], c['present'][1])}"
            for c in entry["argument_changes"]))
    unexplained = [c for c in entry["job_changes"] if not c["explained"]]
    if unexplained:
        parts.append("job: " + ", ".join(
            f"{c['field']} {_value(c['before'])}→{_value(c['after'])} ({c['sources'][1]})" for c in unexplained))
    if entry["code_state"]:
        parts.append(f"code {entry['code_state']['before']}→{entry['code_state']['after']}")
    if entry["job_error"] and entry["kind"] != "reproduction":
        parts.append(f"no job: {entry['job_error']}")
    if not parts and entry["previous"]:
        parts.append("nothing")
    return "; ".join(parts)


def _attribution_text(entry: dict[str, Any]) -> str:
    parts = []
    if entry["confounded"] is True:
        parts.append(f"no: {entry['changes']} changes at once")
    elif entry["confounded"] is False:
        parts.append("yes" if entry["changes"] == 1 else "nothing changed")
    check = entry["repeats_delta"]
    if check is not None:
        verdict = "exceeds" if check["exceeds"] else "within"
        parts.append(f"repeats Δ {check['delta']:+.4f} {verdict} spread {check['spread']:.4f}")
    return "; ".join(parts)


def _val_text(entry: dict[str, Any]) -> str:
    parts = [] if entry["val_miou"] is None else [_score(entry["val_miou"])]
    group = entry["repeats"]
    if group is not None and group["n"] >= 2:
        parts.append(f"repeats {group['mean']:.4f} ± {group['std']:.4f} (n={group['n']})")
    return "; ".join(parts)


def _history_rows(entries: list[dict[str, Any]], metric: Optional[str] = None) -> list[list[str]]:
    """Table rows; `metric` (one of the log's score columns) takes the place of the LB score."""
    rows = []
    for e in entries:
        name = ("  " * (e["depth"] - 1) + "└ " if e["depth"] else "") + e["name"]
        if metric is None:
            value, delta = e["lb_miou"], e["lb_delta"]
        else:
            value, delta = (e["scores"] or {}).get(metric), (e["score_deltas"] or {}).get(metric)
        rows.append([e["date"] or "", name, _score(value) if value is not None else "",
                     _delta(delta), _val_text(e), _changes_text(e), _attribution_text(e), e["notes"] or ""])
    return rows


HISTORY_HEADER = ["Date", "Run", "LB mIoU", "Δ LB", "val mIoU", "Changed", "Attributable", "Notes"]


def _print_json_list(items: Any) -> None:
    """Print a JSON list as `print_json` would (indent 2), an item at a time."""
    import sys

    from ledger.core.jsontext import write_list

    write_list(items, sys.stdout.write)


def _print_markdown_rows(header: list[str], items: Any, rows_of: Any, chunk: int = 1000) -> None:
    """Print `_markdown_table(header, rows_of(items))` a chunk of items at a time."""
    import sys
    from itertools import islice

    items = iter(items)
    first = True
    while True:
        part = list(islice(items, chunk))
        if not part and not first:
            return
        text = _markdown_table(header, rows_of(part))
        sys.stdout.write(text if first else text.split("\n", 2)[2])  # the header once
        first = False


def _history_header(metric: Optional[str]) -> list[str]:
    return HISTORY_HEADER if metric is None else ["Date", "Run", metric, f"Δ {metric}", *HISTORY_HEADER[4:]]


def _check_metric(metric: Optional[str], entries: list[dict[str, Any]]) -> Optional[str]:
    """None for the LB score; else a score column some run has, or a LedgerError naming them."""
    if metric in (None, "lb_miou", "lb"):
        return None
    known = list(dict.fromkeys(m for e in entries for m in e["scores"] or {}))
    if metric not in known:
        from ledger.core.errors import LedgerError

        have = f"the log's score columns are: {', '.join(known)}" if known else "the log has no score columns"
        raise LedgerError(f"--metric {metric!r}: no run has it; {have} (or lb_miou)")
    return metric


@app.command("history")
@user_errors
def history_cmd(
    metric: Annotated[Optional[str], typer.Option("--metric", metavar="NAME", help="Follow one of the log's score columns (e.g. miou_latest) instead of the LB score; --json always carries every score and its delta.")] = None,
    fmt: FormatOption = "table",
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Each run against the logged run before it: what changed (arguments and resolved job),
    the LB score (or --metric) and its delta, and whether the delta can be attributed to one change."""
    from ledger.analysis.history import iter_history
    from ledger.store.db import open_ledger, transaction

    out = output_format(fmt, as_json)
    engine = open_ledger(db, read_only=True)
    # An entry at a time: the same text as the whole history at once, in memory that does
    # not grow with the runs.
    with transaction(engine, write=False) as session:
        if metric not in (None, "lb_miou", "lb"):
            from ledger.store.sql_reader import ArgumentProbe

            probe = ArgumentProbe(session)
            if not probe.has_score(metric):
                _check_metric(metric, [{"scores": dict.fromkeys(probe.score_keys())}])
        else:
            metric = None
        entries = (e.to_dict() for e in iter_history(session))
        if out == "json":
            _print_json_list(entries)
        elif out == "md":
            _print_markdown_rows(_history_header(metric), entries, lambda part: _history_rows(part, metric))
        else:
            _print_history_tables(entries, metric)


# Rows of a history table drawn at a time: a longer history is drawn a part at a time, each
# part with the columns the first part was given, so that the first rows show at once and
# memory does not grow with the runs (rich measures every row of a table before drawing it).
HISTORY_TABLE_ROWS = 1000


def _content_widths(table: Any, out: Any) -> list[Optional[int]]:
    """The width rich gives each column's cells in `table`, padding aside (rich's own
    measure; where a rich lacks it, None: each part takes its own)."""
    measure = getattr(table, "_calculate_column_widths", None)
    padding = getattr(table, "_get_padding_width", None)
    rules = getattr(table, "_extra_width", None)  # the column rules' width, as rich takes it off
    if measure is None or padding is None or not isinstance(rules, int):
        return [None] * len(table.columns)
    options = out.options.update_width(out.options.max_width - rules)
    return [width - padding(k) for k, width in enumerate(measure(out, options))]


def _print_history_tables(entries: Any, metric: Optional[str]) -> None:
    from itertools import islice

    from rich.table import Table
    from rich.text import Text

    out = console()
    header = _history_header(metric)
    widths: Optional[list[Optional[int]]] = None
    while True:
        part = list(islice(entries, HISTORY_TABLE_ROWS))
        if not part and widths is not None:
            return
        table = Table(show_edge=False, header_style="bold", pad_edge=False, show_header=widths is None)
        for k, title in enumerate(header):
            numeric = k in (2, 3)  # the score and its delta
            table.add_column(Text(title), justify="right" if numeric else "left", no_wrap=k in (0, 2, 3),
                             overflow="fold", width=widths[k] if widths else None)
        for entry, row in zip(part, _history_rows(part, metric)):
            cells = [Text(c) for c in row]
            if entry["confounded"]:
                cells[6].stylize("yellow")
            if entry["kind"] == "reproduction":
                cells[1].stylize("cyan")
            table.add_row(*cells)
        if widths is None:
            if len(part) < HISTORY_TABLE_ROWS:
                out.print(table)  # the whole history in one table
                return
            widths = _content_widths(table, out)
        out.print(table)


# ----------------------------------------------------------------------- check

def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


@app.command("check")
@user_errors
def check_cmd(
    tol: TolOption = DEFAULT_TOL,
    fix: Annotated[bool, typer.Option("--fix", help="Mark running rows whose trainer is gone (stale) as interrupted, so that they can be resumed.")] = False,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Audit the log: names the arguments deny, run_name mismatches, notes the arguments
    contradict, scores, shared links, reproductions that disagree, stale runs. Exits 1 on any error."""
    from ledger.analysis.check import check_ledger
    from ledger.store.db import open_ledger, transaction

    engine = open_ledger(db, read_only=not fix)
    with transaction(engine, write=fix) as session:
        report = check_ledger(session, tol=tol, fix=fix)
    if as_json:
        print_json(report.to_dict())
    else:
        from rich.table import Table
        from rich.text import Text

        out = console()
        if report.findings:
            table = Table(show_edge=False, header_style="bold", pad_edge=False)
            table.add_column("Severity", no_wrap=True)
            table.add_column("Row", justify="right", no_wrap=True)
            table.add_column("Run", overflow="fold")
            table.add_column("Code", no_wrap=True)
            table.add_column("Why", overflow="fold")
            for f in report.findings:
                table.add_row(Text(f.severity, style=_SEVERITY_STYLE[f.severity]), Text(str(f.row)), Text(f.run),
                              Text(f.code), Text(f.message))
            out.print(table)
        others = len(report.findings) - report.errors - report.warnings
        summary = f"{_count(report.errors, 'error')}, {_count(report.warnings, 'warning')}"
        out.print(Text(summary + (f", {others} info" if others else "")))
    if report.errors:
        raise typer.Exit(1)
