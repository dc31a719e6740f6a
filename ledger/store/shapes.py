"""The JSON shapes of a run that `ledger list --json` and `ledger show --json` print.

A run here is an ORM `Run` or a record of `ledger.store.sqlite_reader`: only attributes both
have are read, so the two read paths print the same bytes.
"""

from __future__ import annotations

from typing import Any

from ledger.store.liveness import shown_status, stale_reason


def nest_children(runs: list[Any]) -> list[tuple[Any, int]]:
    """Runs with reproductions moved under their parent: (run, depth) in display order."""
    present = {run.id for run in runs}
    children: dict[int, list[Any]] = {}
    roots = []
    for run in runs:
        if run.parent_id is not None and run.parent_id in present:
            children.setdefault(run.parent_id, []).append(run)
        else:
            roots.append(run)
    out: list[tuple[Any, int]] = []

    def visit(run: Any, depth: int) -> None:
        out.append((run, depth))
        for child in children.get(run.id, []):
            visit(child, depth + 1)

    for run in roots:
        visit(run, 0)
    return out


def run_summary(run: Any) -> dict[str, Any]:
    """The fields `ledger list --json` prints for a run (an ORM `Run` or a record here)."""
    return {
        "name": run.name,
        "date": run.date,
        "model": run.model,
        "kind": run.kind,
        "parent": run.parent.name if run.parent is not None else None,
        "status": shown_status(run),  # `stale`: running, but its trainer is gone
        "lb_miou": run.lb_miou,
        "val_miou": run.val_miou,
        "lb_val_miou": run.lb_val_miou,
        "section": run.section,
        "scores": dict(run.scores or {}),  # the log's score columns: {metric: number or None}
        "arguments": run.args,
        "notes": run.notes,
        "links": list(run.links or []),
    }


def run_listing(reader: Any, runs: list[Any]) -> list[dict[str, Any]]:
    """What `ledger list --json` prints: each run's summary with the last value of each of its
    metric series (`metrics`)."""
    last = reader.last_metrics([run.id for run in runs])
    return [run_summary(run) | {"metrics": last.get(run.id, {})} for run in runs]


def run_details(run: Any) -> dict[str, Any]:
    """Everything about a run, as `ledger show --json` prints it."""
    details = run_summary(run)
    details.update(
        arguments=run.args,
        arguments_raw=run.args_raw,
        args_status=run.args_status,
        args_error=run.args_error,
        links=list(run.links or []),
        notes=run.notes,
        children=[child.name for child in run.children],
        tags=[t.tag for t in run.tags],
        created_at=run.created_at.isoformat() if run.created_at else None,
        updated_at=run.updated_at.isoformat() if run.updated_at else None,
        source=run.source,
        source_row=run.source_row,
        name_derived=bool(run.name_derived),
        date_iso=run.date_iso,
        score_kinds=_score_kinds(run),
        extra_columns=_extra_columns(run),
        job=run.job,
        job_hash=run.job_hash,
        environment=run.environment,
        data_fingerprint=run.data_fingerprint,
        duration_s=run.duration_s,
        attempts=list(run.attempts or []),
        command=run.command,
        tracker_id=run.tracker_id,
        queue=run.queue,
        checkpoint_path=run.checkpoint_path,
        error=run.error,
        host=run.host,
        pid=run.pid,
        heartbeat_at=run.heartbeat_at.isoformat() if run.heartbeat_at else None,
        stale_reason=stale_reason(run),
        metrics=_metric_series(run),
    )
    return details


def _score_kinds(run: Any) -> dict[str, str]:
    from ledger.core.cells import metric_kind  # the cell readers load only where a run is shown

    return {metric: metric_kind(metric) for metric in run.scores or {}}


def _extra_columns(run: Any) -> dict[str, str]:
    """The cells of the run's row in columns with no role (score columns are its scores)."""
    from ledger.core.cells import header_role, is_score_header, metric_name  # `show` needs them, `list` does not

    scores = run.scores or {}
    return {h: v for h, v in (run.cells or {}).items()
            if header_role(h) is None and not (is_score_header(h) and metric_name(h) in scores)}


def _metric_series(run: Any) -> dict[str, list[dict[str, Any]]]:
    series: dict[str, list[dict[str, Any]]] = {}
    for metric in run.metrics:
        series.setdefault(metric.name, []).append({"step": metric.step, "epoch": metric.epoch, "value": metric.value})
    return series

