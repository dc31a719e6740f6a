"""ledger against the tools a user would otherwise pick, asked the same questions of the same runs.

One run builds the same ``--runs`` synthetic runs (cli_latency.py's ledger: name, date,
parsed arguments such as lr, batch_size, backbone; lb_miou and val_miou where the log has
them; notes) into three stores in one folder:

1. a ledger (SQLite), by ``cli_latency.build_ledger`` (a small builder of its own if that
   import fails);
2. an MLflow SQLite tracking store: the oldest ``--client-runs`` runs through
   ``MlflowClient`` (so the schema and the alembic revision are MLflow's own), the rest as
   bulk rows in the same tables (runs, tags, params, metrics, latest_metrics) shaped like
   the rows the client wrote; then ``MlflowClient.search_runs``, page by page, must see
   every run, and one bulk run read back through ``get_run`` must carry the ledger's values;
3. a trackio project (its SQLite file under TRACKIO_DIR): the oldest ``--client-runs``
   runs through ``trackio.init/log/finish`` (their times then set to the ledger's, so that
   "newest" means the same run everywhere), the rest as bulk rows in its configs and
   metrics tables shaped like the API's; then ``trackio.Api().runs`` must count every run.

The parameters become MLflow params (``str(value)``, as ``log_param`` stores them) and
trackio config; the date and notes become MLflow tags and trackio config; lb_miou and
val_miou, where present, become a metric at step 0 (in trackio every run logs one metrics
row, empty where it has neither, because trackio finds runs through their metrics).

Then it asks every store the same four questions (the 20 newest runs, the runs with
lr=0.0001, the best 5 by lb_miou, a CSV export of every run) in rounds: each round makes
every call once, one process per call, stdout to a file, wall clock; CPU time and peak RSS
of that very process from GNU time (from ``os.wait4`` where it is missing: an upper bound,
see gnu_time). The table gives the median of ``--repeats`` rounds after one warm-up, the
ratio ledger/anchor, and whether each answer agrees with the ledger's (checked on the
warm-up's output). A call that runs past ``--timeout`` is killed
and not made again. MLflow and trackio are optional benchmark dependencies, never
runtime ones: each is skipped with a message when its interpreter cannot import it.
trackio pins its own dependencies, so it may live in a venv of its own; pass
``--trackio-python`` (or put its ``trackio`` command on PATH). Nothing here reaches the
network: telemetry is off, the Hugging Face hub offline, and HF_HOME an empty folder.

    python benchmarks/anchors.py --runs 10000 --repeats 3 --trackio-python /tmp/anchors-venv/bin/python
    python benchmarks/anchors.py --keep /tmp/anchors-100k     # build there, or reuse what is there
    python benchmarks/anchors.py --runs 50 --repeats 1 --skip-trackio
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import importlib.util
import itertools
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXPERIMENT = "anchors"   # the MLflow experiment
PROJECT = "anchors"      # the trackio project
MANIFEST = "anchors.json"
FILTER_LR = 0.0001
FILTER_TEXT = "lr=0.0001"
QUESTIONS = {
    "newest": "the 20 newest runs",
    "filter": f"runs with {FILTER_TEXT}",
    "best": "best 5 by lb_miou",
    "csv": "CSV export of every run",
}
PAGE = 10_000            # rows per executemany batch and per progress line
MLFLOW_PAGE = 50_000     # MLflow's SEARCH_MAX_RESULTS_THRESHOLD: the largest page search_runs gives
MLFLOW_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "MLFLOW_TRACKING_URI": ""}
TRACKIO_ENV = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1",
               "GRADIO_ANALYTICS_ENABLED": "False", "TRACKIO_DIR": "", "HF_HOME": ""}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the runs, as the ledger holds them (stdlib only: the MLflow and trackio builders run
#    under their own interpreters, which need not have ledger installed) ------------------

def read_runs(ledger: Path, *, newest_only: bool = False):
    """Every run of the ledger file (or only its newest), oldest first, as the plain values the anchors store."""
    conn = sqlite3.connect(ledger)
    try:
        cur = conn.execute(
            "SELECT position, name, date, args, notes, lb_miou, val_miou, created_at FROM runs"
            + (" WHERE position = (SELECT max(position) FROM runs)" if newest_only else "")
            + " ORDER BY position"
        )
        while rows := cur.fetchmany(PAGE):
            for position, name, day, args, notes, lb, val, created in rows:
                stamp = datetime.fromisoformat(str(created))
                if stamp.tzinfo is None:
                    stamp = stamp.replace(tzinfo=timezone.utc)
                metrics = {key: value for key, value in (("lb_miou", lb), ("val_miou", val)) if value is not None}
                yield {
                    "position": position, "name": name, "date": day, "args": json.loads(args) if args else {},
                    "notes": notes, "metrics": metrics, "created": stamp,
                }
    finally:
        conn.close()


def fingerprint(ledger: Path) -> str:
    """Enough of the ledger's runs to tell whether an anchor's store was built from them."""
    with contextlib.closing(sqlite3.connect(ledger)) as conn:
        row = conn.execute("SELECT count(*), min(name), max(name), max(created_at), total(lb_miou), total(val_miou),"
                           " total(length(args)) FROM runs").fetchone()
    return "|".join(map(str, row))


def count_runs(ledger: Path) -> int:
    with contextlib.closing(sqlite3.connect(ledger)) as conn:
        return conn.execute("SELECT count(*) FROM runs").fetchone()[0]


def epoch_ms(stamp: datetime) -> int:
    return int(stamp.timestamp() * 1000)


def iso(stamp: datetime) -> str:
    """The form trackio writes its times in (datetime.now(timezone.utc).isoformat())."""
    return stamp.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def mlflow_params(run: dict) -> dict[str, str]:
    return {key: str(value) for key, value in run["args"].items() if value is not None}


def mlflow_tags(run: dict) -> dict[str, str]:
    tags = {"date": run["date"] or ""}
    if run["notes"]:
        tags["mlflow.note.content"] = run["notes"]
    return tags


def trackio_config(run: dict) -> dict:
    config = dict(run["args"])
    config["date"] = run["date"]
    if run["notes"]:
        config["notes"] = run["notes"]
    return config


def compact(value) -> str:
    """JSON as orjson (trackio's serializer) writes it: no spaces, UTF-8 as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def progress(label: str, done: int, total: int, started: float) -> None:
    say(f"  {label}: {done}/{total} runs, {time.perf_counter() - started:.0f} s")


# -- the MLflow store (runs under the MLflow interpreter) --------------------------------------

def build_mlflow(ledger: Path, db: Path, artifacts: Path, client_runs: int, seed: int) -> dict:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    started = time.perf_counter()
    total = count_runs(ledger)
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=artifacts.as_uri())
    runs = read_runs(ledger)
    first = list(itertools.islice(runs, client_runs))
    client_ids = []
    for run in first:
        ms = epoch_ms(run["created"])
        info = client.create_run(experiment_id, start_time=ms, tags=mlflow_tags(run), run_name=run["name"]).info
        client.log_batch(
            info.run_id,
            metrics=[Metric(key, value, ms, 0) for key, value in run["metrics"].items()],
            params=[Param(key, value) for key, value in mlflow_params(run).items()],
        )
        client.set_terminated(info.run_id, "FINISHED", end_time=ms)
        client_ids.append(info.run_id)
    say(f"  mlflow: {len(first)} runs through MlflowClient in {time.perf_counter() - started:.1f} s")

    conn = sqlite3.connect(db)
    try:
        # The bulk rows copy every column the client wrote but the ones a run sets itself.
        template_id = client_ids[0]
        template = conn.execute(
            "SELECT source_type, source_name, entry_point_name, user_id, status, source_version, lifecycle_stage,"
            " artifact_uri, experiment_id FROM runs WHERE run_uuid = ?", (template_id,)
        ).fetchone()
        (source_type, source_name, entry_point, user_id, status, source_version, stage, artifact_uri,
         experiment_key) = template
        artifact_prefix, artifact_suffix = artifact_uri.split(template_id)
        own = set(mlflow_tags(first[0])) | {"mlflow.runName"}
        extra_tags = [(key, value) for key, value in conn.execute(
            "SELECT key, value FROM tags WHERE run_uuid = ?", (template_id,)) if key not in own]
        metric_row = conn.execute("SELECT is_nan FROM metrics LIMIT 1").fetchone()
        if metric_row is not None and metric_row[0] not in (0, False):
            raise SystemExit("MLflow wrote is_nan=1 for a finite metric: the bulk rows would not match")

        rng = random.Random(seed)
        conn.execute("PRAGMA synchronous = OFF")  # a scratch store: speed over durability while loading
        done = len(first)
        batch: dict[str, list] = {"runs": [], "tags": [], "params": [], "metrics": [], "latest_metrics": []}

        def flush() -> None:
            with conn:
                conn.executemany(
                    "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status,"
                    " start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id,"
                    " deleted_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)", batch["runs"])
                conn.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", batch["tags"])
                conn.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)", batch["params"])
                conn.executemany(
                    "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, 0, 0)",
                    batch["metrics"])
                conn.executemany(
                    "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)"
                    " VALUES (?, ?, ?, 0, 0, ?)", batch["latest_metrics"])
            for rows in batch.values():
                rows.clear()

        for run in runs:
            run_id = uuid.UUID(int=rng.getrandbits(128), version=4).hex
            ms = epoch_ms(run["created"])
            batch["runs"].append((
                run_id, run["name"], source_type, source_name, entry_point, user_id, status, ms, ms,
                source_version, stage, f"{artifact_prefix}{run_id}{artifact_suffix}", experiment_key,
            ))
            tags = {**mlflow_tags(run), "mlflow.runName": run["name"]}
            batch["tags"].extend((key, value, run_id) for key, value in tags.items())
            batch["tags"].extend((key, value, run_id) for key, value in extra_tags)
            batch["params"].extend((key, value, run_id) for key, value in mlflow_params(run).items())
            for key, value in run["metrics"].items():
                batch["metrics"].append((key, value, ms, run_id))
                batch["latest_metrics"].append((key, value, ms, run_id))
            done += 1
            if done % PAGE == 0:
                flush()
                if done % (PAGE * 10) == 0 or done == total:
                    progress("mlflow bulk rows", done, total, started)
        flush()
        alembic = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        last_id = conn.execute("SELECT run_uuid FROM runs ORDER BY start_time DESC LIMIT 1").fetchone()[0]
    finally:
        conn.close()
    built = time.perf_counter() - started
    say(f"  mlflow: {done} runs written in {built:.1f} s; counting them through search_runs")

    # Checks: the alembic revision is the head of this MLflow, search_runs sees every run,
    # and a bulk run reads back with the ledger's values.
    from mlflow.store.db.utils import _get_latest_schema_revision

    head = _get_latest_schema_revision()
    if [row[0] for row in alembic] != [head]:
        raise SystemExit(f"alembic_version is {alembic}, MLflow's head is {head}")
    seen, token, pages = 0, None, 0
    while True:
        page = client.search_runs([experiment_id], max_results=MLFLOW_PAGE, page_token=token)
        seen += len(page)
        pages += 1
        token = page.token
        if not token:
            break
    if seen != total:
        raise SystemExit(f"MlflowClient.search_runs sees {seen} runs, the ledger has {total}")
    newest = next(read_runs(ledger, newest_only=True))
    got = client.get_run(last_id)
    if (got.info.run_name != newest["name"] or got.data.params != mlflow_params(newest)
            or got.data.metrics != newest["metrics"] or got.data.tags.get("date") != newest["date"]):
        raise SystemExit(f"the newest MLflow run reads back as {got.info.run_name}, {got.data}: not {newest}")
    verified = time.perf_counter() - started - built
    say(f"  mlflow: search_runs sees {seen} runs ({pages} pages, {verified:.1f} s); alembic {head}")
    return {"experiment_id": experiment_id, "runs": seen, "client_runs": len(first), "bulk_runs": done - len(first),
            "alembic": head, "build_s": round(built, 1), "verify_s": round(verified, 1)}



# -- the trackio store (runs under the trackio interpreter, TRACKIO_DIR set by the caller) ----

def build_trackio(ledger: Path, client_runs: int, seed: int) -> dict:
    import trackio
    from trackio.sqlite_storage import SCHEMA_VERSION, SQLiteStorage

    started = time.perf_counter()
    total = count_runs(ledger)
    runs = read_runs(ledger)
    first = list(itertools.islice(runs, client_runs))
    with contextlib.redirect_stdout(sys.stderr):  # trackio talks on stdout; ours carries the result
        for run in first:
            trackio.init(project=PROJECT, name=run["name"], config=trackio_config(run),
                         auto_log_gpu=False, auto_log_cpu=False)
            trackio.log(run["metrics"])
            trackio.finish()
    db = SQLiteStorage.get_project_db_path(PROJECT)
    say(f"  trackio: {len(first)} runs through trackio.init/log/finish in {time.perf_counter() - started:.1f} s"
        f" ({db})")

    conn = sqlite3.connect(db)
    try:
        # The API stamped its runs with the time of this build; give them the ledger's, as
        # the bulk rows have, so that the newest run is the same run in every store.
        with conn:
            for run in first:
                stamp = iso(run["created"])
                conn.execute("UPDATE configs SET created_at = ?, config = json_set(config, '$._Created', ?)"
                             " WHERE run_name = ?", (stamp, stamp, run["name"]))
                conn.execute("UPDATE metrics SET timestamp = ? WHERE run_name = ?", (stamp, run["name"]))
        # What the API adds to a run's config besides the run's own values (_Username,
        # _Created, _Group): the bulk rows add the same.
        config = json.loads(conn.execute("SELECT config FROM configs WHERE run_name = ?",
                                         (first[0]["name"],)).fetchone()[0])
        extra = {key: value for key, value in config.items() if key not in trackio_config(first[0])}
        metric_columns = [row[1] for row in conn.execute("PRAGMA table_info(metrics)")]
        with_log_id = "log_id" in metric_columns
        if conn.execute("SELECT count(*) FROM metrics").fetchone()[0] != len(first):
            raise SystemExit("trackio wrote more than one metrics row per run: the bulk rows would not match")

        rng = random.Random(f"{seed}-trackio")
        conn.execute("PRAGMA synchronous = OFF")
        configs, metrics = [], []
        metric_sql = ("INSERT INTO metrics (run_id, timestamp, run_name, step, metrics"
                      + (", log_id) VALUES (?, ?, ?, 0, ?, ?)" if with_log_id else ") VALUES (?, ?, ?, 0, ?)"))

        def flush() -> None:
            with conn:
                conn.executemany("INSERT INTO configs (run_id, run_name, config, created_at) VALUES (?, ?, ?, ?)",
                                 configs)
                conn.executemany(metric_sql, metrics)
            configs.clear()
            metrics.clear()

        done = len(first)
        for run in runs:
            run_id = uuid.UUID(int=rng.getrandbits(128), version=4).hex
            stamp = iso(run["created"])
            values = {**trackio_config(run), **extra}
            if "_Created" in values:
                values["_Created"] = stamp
            configs.append((run_id, run["name"], compact(values), stamp))
            row = (run_id, stamp, run["name"], compact(run["metrics"]))
            metrics.append(row + (uuid.UUID(int=rng.getrandbits(128), version=4).hex,) if with_log_id else row)
            done += 1
            if done % PAGE == 0:
                flush()
                if done % (PAGE * 10) == 0 or done == total:
                    progress("trackio bulk rows", done, total, started)
        flush()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()
    built = time.perf_counter() - started

    # Checks: the schema version is this trackio's, its API counts every run, and the
    # newest run reads back with the ledger's values.
    if version != SCHEMA_VERSION:
        raise SystemExit(f"trackio's database is at schema version {version}, this trackio writes {SCHEMA_VERSION}")
    listed = trackio.Api().runs(PROJECT)
    seen = len(listed)
    if seen != total:
        raise SystemExit(f"trackio.Api().runs sees {seen} runs, the ledger has {total}")
    newest = next(read_runs(ledger, newest_only=True))
    last = listed[seen - 1]
    config = {key: value for key, value in (last.config or {}).items() if not key.startswith("_")}
    logs = SQLiteStorage.get_logs(PROJECT, last.name, run_id=last.id)
    logged = {key: value for key, value in logs[0].items() if key not in ("step", "timestamp")} if logs else {}
    if last.name != newest["name"] or config != trackio_config(newest) or logged != newest["metrics"]:
        raise SystemExit(f"the newest trackio run reads back as {last.name}, {config}, {logged}: not {newest}")
    verified = time.perf_counter() - started - built
    say(f"  trackio: Api().runs sees {seen} runs ({verified:.1f} s); schema version {version}")
    return {"project": PROJECT, "runs": seen, "client_runs": len(first), "bulk_runs": done - len(first),
            "schema_version": version, "build_s": round(built, 1), "verify_s": round(verified, 1)}


# -- the ledger --------------------------------------------------------------------------------

def build_ledger(path: Path, runs: int, seed: int) -> str:
    """cli_latency's ledger; a small one of this script's own if that module cannot be used."""
    sys.path.insert(0, str(HERE))
    try:
        from cli_latency import build_ledger as latency_builder
    except Exception as exc:  # noqa: BLE001 - it is edited by others; any breakage means: use ours
        say(f"  ledger: cli_latency.build_ledger is unavailable ({type(exc).__name__}: {exc}); using a plain builder")
        return _plain_ledger(path, runs, seed)
    latency_builder(path, runs, seed=seed)
    return "cli_latency.build_ledger"


def _plain_ledger(path: Path, runs: int, seed: int) -> str:
    from ledger.store.db import open_ledger

    open_ledger(str(path), create=True).dispose()  # the schema through ledger's own migrations
    rng = random.Random(seed)
    columns = ("id", "position", "name", "date", "model", "args_raw", "args", "args_status", "links", "notes",
               "lb_miou", "val_miou", "kind", "created_at", "updated_at")
    rows = []
    for i in range(1, runs + 1):
        model = rng.choice(("DeepLabV3Plus", "UnetPlusPlus", "FPN"))
        args = {"batch_size": rng.choice((4, 8, 16)), "encoder": rng.choice(("efficientnet-b7", "resnext101_32x8d")),
                "lr": rng.choice((5e-05, 0.0001, 0.0003, 1e-05, 0.0001)), "model": model}
        name = f"{model}_{args['encoder']}_{i:07d}"
        args["run_name"] = name
        lb = round(rng.uniform(0.5, 0.7), 4) if rng.random() < 0.4 else None
        stamp = f"2026-11-28 12:00:00.{i % 997:06d}"
        stamp = datetime.fromtimestamp(datetime.fromisoformat(stamp).replace(tzinfo=timezone.utc).timestamp() + i,
                                       timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
        rows.append((i, i, name, f"2021-{1 + i // 40 % 12:02d}-{1 + i % 28:02d}", model,
                     ", <br>".join(f"{key}={value!r}" for key, value in sorted(args.items())), json.dumps(args), "ok",
                     "[]", None if lb is None else f"lb mIoU : {lb}", lb,
                     round(lb - 0.02, 4) if lb is not None else None, "logged", stamp, stamp))
    with contextlib.closing(sqlite3.connect(path)) as conn:
        with conn:
            conn.executemany(f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows)
    return "anchors' plain builder"


# -- the calls -------------------------------------------------------------------------------------

MLFLOW_SEARCH = """\
import json, sys
import mlflow
experiment_id, max_results, filter_string, order_by = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
runs = mlflow.search_runs(experiment_ids=[experiment_id], filter_string=filter_string, max_results=max_results,
                          order_by=[order_by] if order_by else None, output_format="list")
json.dump([{"name": r.info.run_name, "params": r.data.params, "metrics": r.data.metrics} for r in runs], sys.stdout)
"""

TRACKIO_QUERY = """\
import json, sys
from trackio.sqlite_storage import SQLiteStorage
print(json.dumps(SQLiteStorage.query_project(sys.argv[1], sys.argv[2], max_rows=10**9)))
"""

TRACKIO_CSV = """\
import csv, sys
import trackio
from trackio.sqlite_storage import SQLiteStorage
project = sys.argv[1]
rows, columns = [], {"name": None}
for run in trackio.Api().runs(project):
    row = {"name": run.name, **(run.config or {})}
    for log in SQLiteStorage.get_logs(project, run.name, run_id=run.id):
        row.update((key, value) for key, value in log.items() if key not in ("step", "timestamp"))
    columns.update(dict.fromkeys(row))
    rows.append(row)
writer = csv.DictWriter(sys.stdout, fieldnames=list(columns))
writer.writeheader()
writer.writerows(rows)
"""

TRACKIO_JOIN = "SELECT c.run_name, c.config, m.metrics FROM configs c JOIN metrics m ON m.run_id = c.run_id"
TRACKIO_SQL = {
    "newest": f"{TRACKIO_JOIN} ORDER BY c.created_at DESC LIMIT 20",
    "filter": f"{TRACKIO_JOIN} WHERE json_extract(c.config, '$.lr') = {FILTER_LR}",
    "best": "SELECT run_name, max(json_extract(metrics, '$.lb_miou')) AS lb_miou FROM metrics"
            " WHERE json_extract(metrics, '$.lb_miou') IS NOT NULL GROUP BY run_id ORDER BY lb_miou DESC LIMIT 5",
}


class Call:
    """One tool's way of asking one question: the command, and how to read its answer."""

    def __init__(self, question: str, tool: str, label: str, argv: list[str], env: dict, reader: str):
        self.question, self.tool, self.label, self.argv, self.env, self.reader = question, tool, label, argv, env, reader
        self.walls: list[float] = []
        self.cpus: list[float] = []
        self.rss: list[float] = []
        self.stopped = ""     # why it is no longer made: timed out, failed
        self.answer = None    # (rows, key) read from the warm-up's output
        self.agrees = None


def _names(rows: list[dict], key: str = "name") -> list[str]:
    return [row[key] for row in rows]


def _top(values) -> list[float]:
    return sorted((round(float(v), 6) for v in values if v is not None), reverse=True)


def read_answer(reader: str, question: str, path: Path):
    """(rows, the part of the answer every tool must agree on) from a call's stdout."""
    if question == "csv":
        with open(path, newline="", encoding="utf-8", errors="replace") as handle:
            records = max(sum(1 for record in csv.reader(handle) if record) - 1, 0)  # the header; blank lines
        return records, records
    if reader == "mlflow-table":  # `mlflow runs list`: Date, Name, ID; newest first, one page (1,000 runs)
        text = path.read_text(errors="replace")
        names = [m.group(1) for m in re.finditer(r"(\S+)\s+[0-9a-f]{32}\s*$", text, re.M)]
        return len(names), frozenset(names[:20])
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if reader == "trackio-runs":  # every name, oldest first
        return len(data["runs"]), frozenset(data["runs"][-20:])
    if reader == "trackio-query":
        rows = data["rows"]
        if question == "best":
            return len(rows), _top(row["lb_miou"] for row in rows)
        return len(rows), frozenset(_names(rows, "run_name"))
    rows = data  # ledger --json and the MLflow search_runs snippet: a list of runs
    if question == "best":
        values = [row["lb_miou"] if "lb_miou" in row else row.get("metrics", {}).get("lb_miou") for row in rows]
        return len(rows), _top(values)
    return len(rows), frozenset(_names(rows))


def make_calls(ledger_path: Path, store: Path, mlflow: dict | None, trackio: dict | None, runs: int) -> list[Call]:
    ledger = _command(Path(sys.executable), "ledger")
    base = {key: value for key, value in os.environ.items()
            if key not in ("LEDGER_DB", "MLFLOW_TRACKING_URI", "TRACKIO_DIR")}
    led_env = {**base, "LEDGER_DB": str(ledger_path), "COLUMNS": "160"}
    calls = {q: [] for q in QUESTIONS}
    calls["newest"].append(Call("newest", "ledger", "ledger list --limit 20 --json",
                                [ledger, "list", "--limit", "20", "--json"], led_env, "json"))
    calls["filter"].append(Call("filter", "ledger", f"ledger list --where {FILTER_TEXT} --json",
                                [ledger, "list", "--where", FILTER_TEXT, "--json"], led_env, "json"))
    calls["best"].append(Call("best", "ledger", "ledger list --sort -lb_miou --limit 5 --json",
                              [ledger, "list", "--sort", "-lb_miou", "--limit", "5", "--json"], led_env, "json"))
    calls["csv"].append(Call("csv", "ledger", "ledger export --format csv",
                             [ledger, "export", "--format", "csv"], led_env, "csv"))
    if mlflow:
        py, cli, eid = mlflow["python"], mlflow["cli"], mlflow["experiment_id"]
        env = {**base, **mlflow_env(store)}

        def search(max_results, filter_string="", order_by=""):
            return [py, "-c", MLFLOW_SEARCH, eid, str(max_results), filter_string, order_by]

        calls["newest"] += [
            Call("newest", "mlflow", "mlflow runs list (prints its first page, 1,000 runs)",
                 [cli, "runs", "list", "--experiment-id", eid], env, "mlflow-table"),
            Call("newest", "mlflow", "mlflow.search_runs(max_results=20)", search(20), env, "json"),
        ]
        calls["filter"].append(Call("filter", "mlflow", "mlflow.search_runs(\"params.lr = '0.0001'\")",
                                    search(max(runs, 1), f"params.lr = '{FILTER_LR}'"), env, "json"))
        calls["best"].append(Call("best", "mlflow", "mlflow.search_runs(order_by lb_miou DESC, max_results=5)",
                                  search(5, "", "metrics.lb_miou DESC"), env, "json"))
        calls["csv"].append(Call("csv", "mlflow", "mlflow experiments csv -x ID (stops at 100,000 runs)",
                                 [cli, "experiments", "csv", "-x", eid], env, "csv"))
    if trackio:
        py, cli = trackio["python"], trackio["cli"]
        env = {**base, **trackio_env(store)}
        calls["newest"] += [
            Call("newest", "trackio", "trackio list runs --json (every name)",
                 [cli, "list", "runs", "--project", PROJECT, "--json"], env, "trackio-runs"),
            Call("newest", "trackio", "trackio query (SQL ... LIMIT 20)",
                 [cli, "query", "project", "--project", PROJECT, "--sql", TRACKIO_SQL["newest"], "--json"], env,
                 "trackio-query"),
        ]
        calls["filter"].append(Call("filter", "trackio", "query_project(SQL json_extract; the CLI stops at 10,000 rows)",
                                    [py, "-c", TRACKIO_QUERY, PROJECT, TRACKIO_SQL["filter"]], env, "trackio-query"))
        calls["best"].append(Call("best", "trackio", "trackio query (SQL ... LIMIT 5)",
                                  [cli, "query", "project", "--project", PROJECT, "--sql", TRACKIO_SQL["best"],
                                   "--json"], env, "trackio-query"))
        calls["csv"].append(Call("csv", "trackio", "Api().runs: Run.config + get_logs per run, csv module",
                                 [py, "-c", TRACKIO_CSV, PROJECT], env, "csv"))
    return [call for question in QUESTIONS for call in calls[question]]


def mlflow_env(store: Path) -> dict:
    return {**MLFLOW_ENV, "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}"}


def trackio_env(store: Path) -> dict:
    home = store / "hf-home"  # empty: no token, no cache, nothing to reach out for
    home.mkdir(exist_ok=True)
    return {**TRACKIO_ENV, "TRACKIO_DIR": str(store / "trackio"), "HF_HOME": str(home)}


@functools.lru_cache(maxsize=None)
def gnu_time() -> str | None:
    """GNU time, if it is here: it reports the peak RSS of the command alone.

    A child's own ru_maxrss (os.wait4) starts from this script's RSS at the fork (Linux
    keeps the high-water mark of the memory the child shared until exec), so it is only an
    upper bound; GNU time forks the command from a process of a few MiB.
    """
    found = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    if not found:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        probe = subprocess.run([found, "-f", "%M", "true"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0 and probe.stderr.strip().isdigit():
            return found
    return None


def time_call(call: Call, out: Path, timeout: float) -> None:
    """Run the call once: wall clock, and the CPU time and peak RSS of that process alone."""
    fired = threading.Event()
    timing = out.with_suffix(".time")
    measure = gnu_time()
    argv = [measure, "-f", "%U %S %M", "-o", str(timing), *call.argv] if measure else call.argv
    with open(out, "wb") as stdout, open(out.with_suffix(".err"), "wb") as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=call.env, stdout=stdout, stderr=stderr, start_new_session=True)

        def kill() -> None:
            fired.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the whole session: GNU time and the command

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    if fired.is_set():
        call.stopped = f"killed after {timeout:g} s"
        return
    if proc.returncode != 0:
        tail = out.with_suffix(".err").read_text(errors="replace").strip().splitlines()[-1:] or ["(no stderr)"]
        call.stopped = f"exited {proc.returncode}: {tail[0][:120]}"
        return
    call.walls.append(wall)
    if measure:
        user, system, rss_kib = timing.read_text().split()[-3:]
        call.cpus.append(float(user) + float(system))
        call.rss.append(int(rss_kib) / 1024)
    else:
        call.cpus.append(usage.ru_utime + usage.ru_stime)
        call.rss.append(usage.ru_maxrss / 1024)  # KiB on Linux; an upper bound, see gnu_time


def _command(python: Path, name: str) -> str:
    """The console script `name` installed next to `python`, else on PATH."""
    local = python.parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"cannot find the {name!r} command next to {python} or on PATH")
    return found


# -- finding the anchors -------------------------------------------------------------------------

def find_python(module: str, explicit: str | None, command: str, env: dict) -> tuple[str | None, str]:
    """An interpreter that imports `module`, and its version; else None and why not.

    --<module>-python if given; else this interpreter if it has the module; else the one
    behind the `command` script on PATH (its #! line).
    """
    if explicit:
        candidates = [explicit]
    else:
        candidates = [sys.executable] if importlib.util.find_spec(module) else []
        script = shutil.which(command)
        if script:
            with contextlib.suppress(OSError, UnicodeDecodeError), open(script, encoding="utf-8") as handle:
                first = handle.readline()
                if first.startswith("#!") and Path(first[2:].split()[0]).exists():
                    candidates.append(first[2:].split()[0])
    tried = []
    for python in dict.fromkeys(candidates):
        try:
            proc = subprocess.run([python, "-c", f"import {module}; print({module}.__version__)"],
                                  env=env, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            tried.append(f"{python}: {exc}")
            continue
        if proc.returncode == 0:
            return python, proc.stdout.strip().splitlines()[-1]
        tried.append(f"{python}: {(proc.stderr.strip().splitlines() or ['exit ' + str(proc.returncode)])[-1]}")
    return None, "; ".join(tried) or f"no interpreter here imports {module} and no {command!r} command is on PATH"


def run_worker(python: str, kind: str, ledger: Path, store: Path, client_runs: int, seed: int, env: dict) -> dict:
    """Build an anchor's store under its own interpreter; progress comes through on stderr."""
    proc = subprocess.run([python, str(Path(__file__).resolve()), "--worker", kind, str(ledger), str(store),
                           str(client_runs), str(seed)], env=env, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"building the {kind} store failed (exit {proc.returncode}); see the messages above")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worker(argv: list[str]) -> int:
    kind, ledger, store, client_runs, seed = argv[0], Path(argv[1]), Path(argv[2]), int(argv[3]), int(argv[4])
    if kind == "mlflow":
        result = build_mlflow(ledger, store / "mlflow.db", store / "mlartifacts", client_runs, seed)
    elif kind == "trackio":
        result = build_trackio(ledger, client_runs, seed)
    else:
        raise SystemExit(f"unknown worker {kind!r}")
    print(json.dumps(result))
    return 0


def size_of(*paths: Path) -> int:
    total = 0
    for path in paths:
        if path.is_dir():
            total += sum(child.stat().st_size for child in path.rglob("*") if child.is_file())
        elif path.exists():
            total += path.stat().st_size
    return total


def loadavg() -> str:
    sys.path.insert(0, str(HERE))
    from _common import loadavg as shared

    return shared()


# -- the run -----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000, help="runs in every store (default 100000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up (default 3)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="build the stores in DIR and keep them; reuse the ones already there")
    parser.add_argument("--skip-mlflow", action="store_true", help="leave MLflow out")
    parser.add_argument("--skip-trackio", action="store_true", help="leave trackio out")
    parser.add_argument("--mlflow-python", metavar="PATH",
                        help="an interpreter with mlflow (default: this one, else the one behind `mlflow` on PATH)")
    parser.add_argument("--trackio-python", metavar="PATH",
                        help="an interpreter with trackio (default: this one, else the one behind `trackio` on PATH)")
    parser.add_argument("--timeout", type=float, default=600, metavar="S",
                        help="kill a call after S seconds and stop making it (default 600)")
    parser.add_argument("--client-runs", type=int, default=5, metavar="K",
                        help="runs written through each anchor's own API before the bulk rows (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args(argv)
    if min(opts.runs, opts.client_runs, opts.repeats) < 1:
        parser.error("--runs, --repeats and --client-runs must be at least 1")

    tmp = None
    if opts.keep is not None:
        store = opts.keep.resolve()
        store.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="ledger-anchors-")
        store = Path(tmp.name)
    try:
        return _run(opts, store)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _run(opts, store: Path) -> int:
    ledger = store / "ledger.db"
    manifest_path = store / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() and ledger.exists() else {}

    def save() -> None:
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")

    if ledger.exists():
        count = count_runs(ledger)
        say(f"ledger: reusing {ledger}: {count} runs" + (" (--runs ignored)" if count != opts.runs else ""))
    else:
        for stale in (store / "mlflow.db", store / "mlartifacts", store / "trackio"):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)
        say(f"ledger: building {opts.runs} runs at {ledger}")
        started = time.perf_counter()
        builder = build_ledger(ledger, opts.runs, opts.seed)
        count = count_runs(ledger)
        manifest = {"runs": count, "ledger": {"how": builder, "build_s": round(time.perf_counter() - started, 1)}}
        save()
        say(f"ledger: {count} runs in {time.perf_counter() - started:.1f} s ({builder})")

    print_of = fingerprint(ledger)  # an anchor's store is reused only if it was built from these runs
    anchors: dict[str, dict | None] = {}
    skipped: dict[str, str] = {}
    for kind, skip, explicit, env in (
        ("mlflow", opts.skip_mlflow, opts.mlflow_python, {**os.environ, **mlflow_env(store)}),
        ("trackio", opts.skip_trackio, opts.trackio_python, {**os.environ, **trackio_env(store)}),
    ):
        anchors[kind] = None
        if skip:
            skipped[kind] = f"--skip-{kind}"
            continue
        python, version = find_python(kind, explicit, kind, env)
        if python is None:
            skipped[kind] = f"not available ({version})"
            say(f"{kind}: skipped: {skipped[kind]}")
            continue
        paths = [store / "mlflow.db", store / "mlartifacts"] if kind == "mlflow" else [store / "trackio"]
        entry = manifest.get(kind)
        if entry and entry.get("built_from") == print_of and entry.get("version") == version and paths[0].exists():
            say(f"{kind}: reusing its store ({count} runs, {kind} {version})")
        else:
            for stale in paths:
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)
            say(f"{kind} {version} ({python}): building {count} runs")
            entry = {**run_worker(python, kind, ledger, store, opts.client_runs, opts.seed, env), "version": version,
                     "built_from": print_of}
            manifest[kind] = entry
            save()
        anchors[kind] = {**entry, "python": python, "cli": _command(Path(python), kind)}

    calls = make_calls(ledger, store, anchors["mlflow"], anchors["trackio"], count)
    floor = Call("floor", "python", "python -c pass", [sys.executable, "-c", "pass"], dict(os.environ), "none")
    outs = store / "out"
    outs.mkdir(exist_ok=True)
    load_before = loadavg()
    say(f"timing {len(calls)} calls, {opts.repeats} rounds after a warm-up; load average {load_before}")
    for round_ in range(opts.repeats + 1):
        say(f"round {round_}" + (" (warm-up)" if round_ == 0 else f"/{opts.repeats}"))
        time_call(floor, outs / "floor.out", opts.timeout)
        for index, call in enumerate(calls):
            if call.stopped:
                continue
            out = outs / f"{index}.out"
            time_call(call, out, opts.timeout)
            say(f"  {call.tool:8} {call.label}: " + (call.stopped or f"{call.walls[-1]:.2f} s"))
            if round_ == 0 and not call.stopped:
                try:
                    call.answer = read_answer(call.reader, call.question, out)
                except (ValueError, KeyError, TypeError) as exc:
                    call.answer = (None, f"unreadable: {type(exc).__name__}: {exc}")
        if round_ == 0:
            for call in (floor, *calls):
                call.walls.clear()
                call.cpus.clear()
                call.rss.clear()
    for out in outs.iterdir():
        out.unlink()
    outs.rmdir()

    print_report(opts, store, count, calls, floor, anchors, skipped, manifest, load_before)
    return 0


def ledger_revision() -> str:
    """The commit the ledger code was at, and whether the checkout had changes on top."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                              timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "ledger"], cwd=HERE.parent,
                               capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "an unknown revision"
    return (head or "an unknown revision") + (" with uncommitted changes under ledger/" if dirty else "")


def _fmt(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.1f}"


def print_report(opts, store: Path, count: int, calls: list[Call], floor: Call, anchors: dict, skipped: dict,
                 manifest: dict, load_before: str) -> None:
    versions = ", ".join(f"{kind} {anchors[kind]['version']}" if anchors[kind] else f"{kind} skipped: {skipped[kind]}"
                         for kind in ("mlflow", "trackio"))
    print(f"\n{count:,} runs; median of {opts.repeats} rounds after 1 warm-up; one process per call; "
          f"cpus={os.cpu_count()}; load average before {load_before}, after {loadavg()}")
    rss = "GNU time" if gnu_time() else "os.wait4 (an upper bound: it counts this script's RSS at the fork)"
    print(f"ledger at {ledger_revision()}; {versions}; peak RSS from {rss}; python -c pass (the floor): "
          f"{_fmt(statistics.median(floor.walls)) if floor.walls else '-'} s\n")
    print("| question | tool | call | median s | min-max s | cpu s | peak MiB | ledger/this | answer |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for question, title in QUESTIONS.items():
        group = [call for call in calls if call.question == question]
        base = group[0]  # the ledger's call
        base_median = statistics.median(base.walls) if base.walls else None
        for call in group:
            if call.walls:
                median = statistics.median(call.walls)
                cells = [_fmt(median), f"{_fmt(min(call.walls))}-{_fmt(max(call.walls))}",
                         _fmt(statistics.median(call.cpus)), f"{max(call.rss):.0f}"]
                ratio = f"{base_median / median:.3g}" if base_median is not None else "-"
            else:
                cells = [call.stopped or "not made", "", "", ""]
                ratio = f"< {base_median / opts.timeout:.3g}" if base_median and "killed" in call.stopped else "-"
            print(f"| {title if call is base else ''} | {call.tool} | `{call.label}` | " + " | ".join(cells)
                  + f" | {ratio if call is not base else '1'} | {_agreement(call, base, count)} |")
    print("\nledger/this < 1: ledger is faster (0.1 = ten times). Answers are read from the warm-up's output "
          "and compared with the ledger's: the same 20 newest names, the same names matching the filter, the same "
          "5 best lb_miou values (names may differ between runs that tie), one CSV row per run.")

    print("\n| store | MiB | bytes/run | how it was filled | checked |")
    print("| --- | ---: | ---: | --- | --- |")
    ledger_entry = manifest.get("ledger", {})
    sizes = [("ledger (SQLite)", size_of(store / "ledger.db", store / "ledger.db-wal"),
              f"{ledger_entry.get('how', 'reused')}", "SELECT count(*)")]
    if anchors["mlflow"]:
        entry = anchors["mlflow"]
        sizes.append((f"MLflow {entry['version']} (SQLite)", size_of(store / "mlflow.db"),
                      f"{entry['client_runs']} runs through MlflowClient, {entry['bulk_runs']} as bulk rows "
                      f"({entry['build_s']} s)",
                      f"MlflowClient.search_runs pages see {entry['runs']}; alembic {entry['alembic']} is the head; "
                      f"the newest run reads back"))
    if anchors["trackio"]:
        entry = anchors["trackio"]
        sizes.append((f"trackio {entry['version']} (SQLite)", size_of(store / "trackio"),
                      f"{entry['client_runs']} runs through trackio.init/log/finish, {entry['bulk_runs']} as bulk rows "
                      f"({entry['build_s']} s)",
                      f"trackio.Api().runs sees {entry['runs']}; schema version {entry['schema_version']}; "
                      f"the newest run reads back"))
    for name, size, how, check in sizes:
        print(f"| {name} | {size / 2**20:.1f} | {size / max(count, 1):.0f} | {how} | {check} |")
    for kind, why in skipped.items():
        print(f"\n{kind}: skipped ({why})")


def _agreement(call: Call, base: Call, count: int) -> str:
    if call.answer is None:
        return "-"
    rows, key = call.answer
    if rows is None:
        return key
    if call.question == "csv":
        return f"{rows:,} rows" + ("" if rows == count else f" (not {count:,})")
    if call is base:
        return f"{rows:,} rows"
    if base.answer is None or base.answer[0] is None:
        return f"{rows:,} rows"
    same = key == base.answer[1]
    if call.reader in ("mlflow-table", "trackio-runs"):
        return f"{rows:,} rows; its newest 20 " + ("are the ledger's" if same else "differ from the ledger's")
    return f"{rows:,} rows, " + ("same" if same else "DIFFERENT")


if __name__ == "__main__":
    sys.exit(main())
