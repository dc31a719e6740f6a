"""Runs from the trackers a team already uses: W&B run folders and CSV, MLflow stores.

Each tracker run becomes one row whose `tracker_id` (`wandb:ID`, `mlflow:ID`) is the merge
key: a re-import changes nothing, a run that changed upstream (a new summary value, an
edited note) is reported as changed and updated in place, a new one is added. Names are
the tracker's display names; one that another row already has gets the run id as a
suffix. Nothing is written unless every run was read.

- W&B run folder (`run-*`, `offline-run-*`): read from its files without the W&B service
  (`reproduce.wandb_files`): display name (else the id), start date, config -> arguments,
  history -> per-step series, summary values without history -> final values, notes,
  tags, the URL of a synced run; the program, its arguments and the git commit, when
  recorded, make the row reproducible by the command recipe.
- W&B's runs-table CSV: Name, State, Notes, Tags, Created, Runtime, ID and the config and
  summary columns; a `config.`/`summary.` prefix says which a column is, else a column
  whose every value is a number and whose name reads as a metric (loss, acc, iou, dice,
  map, f1, score, auc, error, val_, train_, test_) is a metric and the rest arguments.
- MLflow, through MLflow's own client (the `mlflow` extra): every run of the chosen
  experiments, params -> typed arguments, metric histories, `mlflow.note.content` ->
  notes, `mlflow.source.git.commit` and `mlflow.source.name` kept, `mlflow.parentRunId` ->
  the parent row. Deleted runs are skipped and counted.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger.core.args import render_arguments
from ledger.core.argv import typed
from ledger.core.errors import LedgerError
from ledger.store.models import Metric, Run, Tag

MLFLOW_HINT = "importing from MLflow needs MLflow's client: pip install 'ledger[mlflow]'"
_METRIC_WORDS = re.compile(r"loss|acc|iou|dice|map|f1|score|auc|error|^val_|^train_|^test_|^best_", re.IGNORECASE)
_WANDB_CSV_COLUMNS = {"name", "state", "notes", "tags", "created", "runtime", "id", "user", "sweep", "group",
                      "job type", "updated", "end time", "hostname", "description", "commit", "github"}


@dataclass
class TrackerRun:
    """One run as a tracker holds it, in the ledger's terms."""

    tracker_id: str
    name: str
    date: Optional[str] = None
    args: dict[str, Any] = field(default_factory=dict)
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    notes: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    command: Optional[dict[str, Any]] = None
    extra: dict[str, str] = field(default_factory=dict)  # what the tracker says that has no column
    parent: Optional[str] = None  # the parent's tracker_id

    def state(self) -> dict[str, Any]:
        """What a re-import compares: a run whose state changed upstream is updated."""
        return {"date": self.date, "args": self.args, "notes": self.notes, "tags": sorted(set(self.tags)),
                "links": self.links, "series": {k: [list(p) for p in v] for k, v in sorted(self.series.items())},
                "extra": self.extra, "command": self.command, "parent": self.parent}


@dataclass
class TrackerReport:
    source: str
    tracker: str
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"run": ..., "why": ...}
    mapped: dict[str, str] = field(default_factory=dict)  # tracker field -> ledger field
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _date(seconds: Optional[float]) -> Optional[str]:
    if not seconds:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).date().isoformat()


# ------------------------------------------------------------------------- W&B


def wandb_folders(path: Path) -> list[Path]:
    """The W&B run folders at `path`: the folder itself, or those under it (and under its `wandb/`)."""
    path = Path(path)
    if not path.exists():
        raise LedgerError(f"no such file or folder: {path}")
    if list(path.glob("run-*.wandb")):
        return [path]
    found = []
    for base in (path, path / "wandb"):
        if base.is_dir():
            found += [p for p in sorted(base.iterdir()) if p.is_dir() and re.match(r"(offline-)?run-", p.name)
                      and list(p.glob("run-*.wandb"))]
    if not found:
        raise LedgerError(f"{path} holds no W&B run folder (run-*/ or offline-run-*/ with a run-*.wandb file)")
    return found


def wandb_run(folder: Path) -> TrackerRun:
    from reproduce.wandb_files import WandbFileError, metric_points, read_run_folder

    try:
        data = read_run_folder(folder)
    except (WandbFileError, OSError) as exc:
        raise LedgerError(f"{folder}: {exc}") from None
    run_id = data["run_id"] or folder.name.rsplit("-", 1)[-1]
    series: dict[str, list[tuple[int, float]]] = {}
    for point in metric_points(data["history"]):
        for key, value in point.items():
            if key != "step":
                series.setdefault(key, []).append((point["step"], value))
    last = max((s for points in series.values() for s, _ in points), default=0)
    for key, value in data["summary"].items():
        if key.startswith("_") or key in series or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        series[key] = [(last, float(value))]
    program = data.get("program") or {}
    command = None
    commit = program.get("commit") or data.get("commit")
    if program.get("program") and commit:
        # W&B's `root` is its own folder; the repository is the one holding the program, and
        # `code_path` the program relative to it. A clone elsewhere is named with --repo.
        from reproduce.command import repository_root

        where = Path(program["program"]).parent
        root = repository_root(where) if where.is_dir() else None
        script = program.get("code_path") or Path(program["program"]).name
        command = {"argv": [program.get("executable") or "python", script, *program.get("args", [])], "cwd": ".",
                   "git": {"root": str(root or where), "commit": commit, "branch": None,
                           "remote": program.get("remote") or data.get("remote"), "dirty": False, "diff": "",
                           "untracked": {}},
                   "env_keys": [], "from_tracker": "wandb"}
    extra = {"W&B run": run_id}
    if data.get("project"):
        extra["W&B project"] = str(data["project"])
    if data["offline"]:
        extra["W&B"] = "offline run (not synced)"
    return TrackerRun(tracker_id=f"wandb:{run_id}", name=data["name"] or run_id, date=_date(data["start_time"]),
                      args=data["config"], series=series, notes=data["notes"], tags=data["tags"],
                      links=[data["url"]] if data["url"] else [], command=command, extra=extra)


def wandb_csv_runs(path: Path) -> list[TrackerRun]:
    """The runs table W&B's UI exports as CSV."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise LedgerError(f"no such file: {path}") from None
    except UnicodeDecodeError as exc:
        raise LedgerError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or "Name" not in rows[0]:
        raise LedgerError(f"{path} is not a W&B runs table: it has no Name column")
    columns = [c for c in rows[0] if c is not None]
    kinds = {}
    for column in columns:
        low = column.lower()
        if low in _WANDB_CSV_COLUMNS:
            continue
        if low.startswith("config."):
            kinds[column] = ("arg", column[7:])
        elif low.startswith("summary."):
            kinds[column] = ("metric", column[8:])
        else:
            numbers = all(_number(r.get(column)) is not None for r in rows if (r.get(column) or "").strip())
            kinds[column] = ("metric" if numbers and _METRIC_WORDS.search(column) else "arg", column)
    runs = []
    for number, row in enumerate(rows, start=2):
        name = (row.get("Name") or "").strip()
        if not name:
            raise LedgerError(f"{path}: line {number} has no Name")
        run_id = (row.get("ID") or "").strip() or name
        args, series = {}, {}
        for column, (kind, key) in kinds.items():
            cell = (row.get(column) or "").strip()
            if not cell:
                continue
            if kind == "arg":
                args[key] = typed(cell)
            elif _number(cell) is not None:
                series[key] = [(0, _number(cell))]
        tags = [t.strip() for t in (row.get("Tags") or "").split(",") if t.strip()]
        extra = {k: row[k] for k in ("State", "Runtime") if row.get(k)}
        created = (row.get("Created") or "").strip()
        runs.append(TrackerRun(tracker_id=f"wandb:{run_id}", name=name, date=created[:10] or None, args=args,
                               series=series, notes=(row.get("Notes") or "").strip() or None, tags=tags, extra=extra))
    return runs


def _number(text: Any) -> Optional[float]:
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return value if value == value else None  # NaN is no score


# ---------------------------------------------------------------------- MLflow


def mlflow_runs(uri: str, experiments: Iterable[str] = ()) -> tuple[list[TrackerRun], list[dict[str, str]]]:
    """Every run of the chosen experiments (all by default) of the MLflow store at `uri`,
    and the deleted ones skipped."""
    try:
        from mlflow.entities import ViewType
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise LedgerError(MLFLOW_HINT) from None
    store = uri
    if not re.match(r"^[a-z][a-z0-9+.-]*:", store):  # a plain folder: the file store
        folder = Path(store).expanduser()
        if not folder.is_dir():
            raise LedgerError(f"no MLflow store at {store}: no such folder")
        store = folder.resolve().as_uri()
        # MLflow 3 keeps its file store in maintenance and refuses it unless asked; reading one
        # a team already has is what this import is for.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    elif store.startswith("sqlite:///"):
        file = Path(store[len("sqlite:///"):])
        if not file.is_file():
            raise LedgerError(f"no MLflow store at {uri}: no such file {file}")
        _check_mlflow_sqlite(file, uri)
    try:
        client = MlflowClient(tracking_uri=store)
        known = client.search_experiments(view_type=ViewType.ALL)
    except Exception as exc:  # MLflow raises its own errors for a store it cannot read
        raise LedgerError(f"{uri} is not an MLflow tracking store: {str(exc).splitlines()[0][:200]}") from None
    chosen = list(known)
    if experiments:
        by_name = {e.name: e for e in known}
        missing = [name for name in experiments if name not in by_name]
        if missing:
            raise LedgerError(f"no experiment {missing[0]!r} in {uri}; it has: {', '.join(sorted(by_name)) or 'none'}")
        chosen = [by_name[name] for name in experiments]
    runs, skipped = [], []
    for experiment in chosen:
        for run in client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL,
                                      max_results=50000):
            info, data = run.info, run.data
            name = info.run_name or data.tags.get("mlflow.runName") or info.run_id
            if info.lifecycle_stage == "deleted":
                skipped.append({"run": name, "why": "deleted in MLflow"})
                continue
            series = {}
            for key in data.metrics:
                history = client.get_metric_history(info.run_id, key)
                series[key] = sorted((int(m.step), float(m.value)) for m in history)
            tags = data.tags
            extra = {"MLflow run": info.run_id, "MLflow experiment": experiment.name}
            for tag, label in (("mlflow.source.git.commit", "Commit"), ("mlflow.source.name", "Source")):
                if tags.get(tag):
                    extra[label] = tags[tag]
            user_tags = sorted(k for k in tags if not k.startswith("mlflow."))
            runs.append(TrackerRun(
                tracker_id=f"mlflow:{info.run_id}", name=name, date=_date((info.start_time or 0) / 1000),
                args={k: typed(v) for k, v in sorted(data.params.items())}, series=series,
                notes=tags.get("mlflow.note.content") or None, tags=[f"{k}={tags[k]}" if tags[k] else k
                                                                     for k in user_tags][:50],
                extra=extra, parent=f"mlflow:{tags['mlflow.parentRunId']}" if tags.get("mlflow.parentRunId") else None))
    return runs, skipped


def _check_mlflow_sqlite(file: Path, uri: str) -> None:
    """A SQLite file that is not an MLflow store is refused before MLflow would create tables in it."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{file}?mode=ro", uri=True) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise LedgerError(f"{uri} is not an MLflow tracking store: {exc}") from None
    if not {"experiments", "runs", "metrics", "params"} <= tables:
        raise LedgerError(f"{uri} is not an MLflow tracking store: it has no experiments/runs tables")


# ---------------------------------------------------------------------- merging


def merge(session: Session, runs: list[TrackerRun], report: TrackerReport) -> None:
    """Add or update a row per tracker run, keyed by its tracker id; parents linked after."""
    seen: dict[str, str] = {}
    for run in runs:
        if run.tracker_id in seen:
            raise LedgerError(f"{run.tracker_id} appears twice ({seen[run.tracker_id]} and {run.name})")
        seen[run.tracker_id] = run.name
    existing = {r.tracker_id: r for r in session.scalars(select(Run).where(Run.tracker_id.in_(list(seen))))}
    position = session.scalar(select(func.max(Run.position))) or 0
    rows: dict[str, Run] = {}
    for run in runs:
        row = existing.get(run.tracker_id)
        state = run.state()
        if row is None:
            name = _free_name(session, run)
            position += 1
            row = Run(name=name, position=position, tracker_id=run.tracker_id, links=[], kind="logged",
                      args_status="none")
            session.add(row)
            _fill(session, row, run)
            report.added.append(name)
        elif _row_state(row) != json.loads(json.dumps(state, default=str)):
            _fill(session, row, run)
            report.changed.append(row.name)
        else:
            report.unchanged.append(row.name)
        rows[run.tracker_id] = row
    session.flush()
    for run in runs:
        if run.parent:
            parent = rows.get(run.parent) or session.scalar(select(Run).where(Run.tracker_id == run.parent))
            rows[run.tracker_id].parent_id = parent.id if parent is not None else None


def _row_state(row: Run) -> dict[str, Any]:
    """A row's state as `TrackerRun.state` builds it, from what the row stores."""
    series: dict[str, list[list[Any]]] = {}
    for metric in sorted(row.metrics, key=lambda m: (m.name, m.step)):
        series.setdefault(metric.name, []).append([metric.step, metric.value])
    return json.loads(json.dumps({
        "date": row.date, "args": row.args or {}, "notes": row.notes, "tags": sorted(t.tag for t in row.tags),
        "links": list(row.links or []), "series": dict(sorted(series.items())), "extra": dict(row.cells or {}),
        "command": row.command, "parent": row.parent.tracker_id if row.parent is not None else None,
    }, default=str))


def _free_name(session: Session, run: TrackerRun) -> str:
    from ledger.core.cells import check_name

    base = check_name(run.name.replace("/", "_").strip() or run.tracker_id.split(":", 1)[1], "run name")
    for candidate in (base, f"{base}_{run.tracker_id.split(':', 1)[1][:12]}"):
        if session.scalar(select(Run.id).where(Run.name == candidate)) is None:
            return candidate
    raise LedgerError(f"two runs would both be named {base!r}; rename one in the tracker or in the ledger first")


def _fill(session: Session, row: Run, run: TrackerRun) -> None:
    row.date = run.date
    row.args = run.args or None
    row.args_raw = render_arguments(run.args) if run.args else None
    row.args_status = "ok" if run.args else "none"
    row.notes = run.notes
    row.links = list(run.links)
    row.command = run.command
    row.cells = dict(run.extra)
    row.model = str(run.args.get("model") or run.args.get("arch") or "") or None
    for metric in list(row.metrics):
        session.delete(metric)
    for tag in list(row.tags):
        session.delete(tag)
    session.flush()
    for name, points in sorted(run.series.items()):
        for step, value in points:
            row.metrics.append(Metric(name=name[:64], step=step, epoch=None, value=value))
    for tag in sorted(set(run.tags)):
        row.tags.append(Tag(tag=tag[:64]))
    for column, names in (("val_miou", ("val_miou", "val mIoU", "Val mIoU")), ("lb_miou", ("lb_miou", "LB mIoU"))):
        values = [v for key in names for _, v in run.series.get(key, [])]
        setattr(row, column, max(values) if values else None)


def import_tracker(db: Optional[str], source: str, *, csv_from: Optional[str] = None,
                   experiments: Iterable[str] = (), dry_run: bool = False) -> TrackerReport:
    """Import W&B run folders, a W&B CSV or an MLflow store into the ledger at `db`, in one transaction."""
    from ledger.store.importer import import_into_with

    if source.startswith("mlflow:"):
        runs, skipped = mlflow_runs(source[len("mlflow:"):], experiments)
        report = TrackerReport(source=source, tracker="mlflow", skipped=skipped, mapped={
            "run name": "name", "start time": "date", "params": "arguments", "metrics": "metric series",
            "mlflow.note.content": "notes", "mlflow.parentRunId": "parent", "git commit, source": "extra cells"})
    elif csv_from == "wandb":
        runs = wandb_csv_runs(Path(source))
        report = TrackerReport(source=source, tracker="wandb-csv", mapped={
            "Name": "name", "Created": "date", "Notes": "notes", "Tags": "tags",
            "config columns": "arguments", "summary columns": "metrics (final values)"})
    else:
        if experiments:
            raise LedgerError("--experiment chooses MLflow experiments; give an mlflow: source")
        runs = [wandb_run(folder) for folder in wandb_folders(Path(source))]
        report = TrackerReport(source=source, tracker="wandb", mapped={
            "display name": "name", "start time": "date", "config": "arguments", "history": "metric series",
            "summary": "final values", "notes/tags": "notes/tags", "program + commit": "command"})
    report.dry_run = dry_run
    import_into_with(db, lambda session: merge(session, runs, report), dry_run=dry_run)
    return report
