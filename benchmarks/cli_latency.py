"""How long the read commands take on a big ledger, as a user feels it: one process per call.

Builds a ledger of ``--runs`` synthetic but realistic runs (the seed log's shape: parsed
arguments, W&B links, notes partly in Korean, LB scores in some notes, a few % of
reproductions under their parent) in a temporary folder, then times each command as a
separate process, stdout to a pipe, wall clock, median of ``--repeats`` rounds after one
warm-up, with its CPU time and peak memory. Rounds are interleaved (every command once per
round) so that background load hits all commands alike. ``sqlite-utils rows`` doing the
same listing is the yardstick, ``python -c pass`` the floor no Python CLI can beat; the
table gives each command's ratio to both, and PASS/MISS against the targets of issue 14
(start-up <= 0.1 s; list, a rare filter, a sort and show <= 0.15 s and 5x faster than
sqlite-utils; an unknown name's suggestions <= 0.2 s; list under 60 MiB).

    python benchmarks/cli_latency.py                       # 100,000 runs, 7 rounds
    python benchmarks/cli_latency.py --runs 10000 --repeats 3
    python benchmarks/cli_latency.py --runs 1000000 --keep /tmp/big.db --no-export
                                                           # keep (or reuse) the ledger
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Iterator

from ledger.core.args import render_arguments
from ledger.core.cells import DEFAULT_HEADERS, DEFAULT_LINK_LABEL, parse_lb
from ledger.core.filters import SEARCH_INDEX
from ledger.store.db import make_engine, upgrade

from _common import loadavg  # noqa: E402  (benchmarks run as scripts; the folder is on sys.path)

# The schema the synthetic rows are written in (its columns are COLUMNS); later migrations
# then fill what they add, as on a user's ledger.
BULK_REVISION = "0004"

MODELS = ("DeepLabV3", "DeepLabV3Plus", "UnetPlusPlus", "PSPNet", "FPN", "SwinUperNet")
BACKBONES = ("efficientnet-b7", "timm-efficientnet-b5", "resnext101_32x8d", "timm-regnety_320", "swin_base")
CRITERIA = ("cross_entropy", "focal", "label_smoothing", "soft_ce", "dice")
LRS = (5e-05, 0.0001, 0.0003, 1e-05, 0.0001)  # 0.0001 twice: the common choice, as in the seed
NOTES = (
    None,
    None,
    "CosineAnnealingLR tmax : 2 -> 10",
    "backbone을 noisy student로 변경",
    "cutmix 적용, lb mIoU : {lb}",
    "augmentation 추가 (HorizontalFlip, Rotate) <br>lb mIoU : {lb}",
    "val loss가 튀어서 lr 낮춤",
    "histogram equalization 적용 후 학습, LB score {lb}",
    "5 epoch 이후 overfitting",
    "seed만 바꿔서 다시 돌림",
)
COLUMNS = (
    "id", "position", "name", "date", "model", "args_raw", "args", "args_status", "args_error", "links",
    "notes", "lb_miou", "val_miou", "lb_val_miou", "kind", "parent_id", "status", "created_at",
    "updated_at", "source", "source_row", "cells", "row_line", "job", "job_hash", "duration_s",
)


def _config_pool(rng: random.Random, size: int) -> list[tuple[dict, str, str, str]]:
    """Argument sets without run_name, each pre-rendered as the text before and after it.

    Rendering is the slow part of building the ledger (a literal_eval per value), so each
    configuration is rendered once and every run splices its own run_name in.
    """
    pool = []
    for _ in range(size):
        model = rng.choice(MODELS)
        values = {
            "batch_size": rng.choice((4, 8, 16)),
            "lr": rng.choice(LRS),
            "model": model,
            "num_epochs": rng.choice((10, 15, 20, 25)),
            "optimizer": rng.choice(("MADGRAD", "AdamW", "Adam")),
            "scheduler": rng.choice(("CosineAnnealingLR", "StepLR", "CosineAnnealingWarmRestarts")),
            "seed": rng.choice((42, 42, 42, 7, 2021)),
            "val_batch_size": rng.choice((4, 8)),
            "weight_decay": rng.choice((1e-06, 0.0001)),
        }
        if rng.random() < 0.5:
            values.update(criterion1=rng.choice(CRITERIA), criterion2=rng.choice(CRITERIA), multi_loss=True)
        else:
            values["criterion"] = rng.choice(CRITERIA)
        if rng.random() < 0.6:
            values["backbone"] = rng.choice(BACKBONES)
            values["cutmix"] = rng.random() < 0.3
        separator = ", " if rng.random() < 0.05 else ", <br>"
        before = render_arguments({k: v for k, v in values.items() if k < "run_name"}, separator=separator)
        after = render_arguments({k: v for k, v in values.items() if k > "run_name"}, separator=separator)
        pool.append((values, before, after, separator))
    return pool


def _imported_cells(name: str, day: str, model: str, args_raw: str, links: list[str], notes: str | None) -> dict:
    """The row's cells as an import stores them (every column, Markdown source)."""
    link_cell = "<br>".join(f"[{DEFAULT_LINK_LABEL}]({url})" for url in links) or "None"
    return dict(zip(DEFAULT_HEADERS, (day, name, model, args_raw, link_cell, notes or "None")))


def _rows(runs: int, seed: int, found: dict) -> Iterator[tuple]:
    """The runs table's rows, one at a time (a million of them would not fit in memory as a
    list); sets found["middle"] to the name of the run in the middle."""
    rng = random.Random(seed)
    pool = _config_pool(rng, 400)
    start = date(2021, 4, 30)
    now = datetime(2026, 11, 28, 12, 0, 0)
    logged_ids: deque[int] = deque(maxlen=500)  # a reproduction's parent is one of the last 500 logged runs
    recent: dict[int, tuple] = {}
    first: list[tuple] = []
    for i in range(1, runs + 1):
        values, before, after, separator = rng.choice(pool)
        day = (start + timedelta(days=i // 40)).isoformat()
        stamp = f"{now + timedelta(seconds=i, microseconds=i % 997):%Y-%m-%d %H:%M:%S.%f}"  # SQLAlchemy's SQLite format
        if logged_ids and rng.random() < 0.03:
            parent_id = rng.choice(logged_ids)
            parent = recent[parent_id]
            name = f"{parent[2]}_repro{i}"
            val = round(rng.uniform(0.45, 0.70), 4)
            job = {"run_name": name, "model": parent[4], "image_size": 512, "device": "cuda", "seed": 42}
            row = (
                i, i, name, day, parent[4], parent[5], parent[6], "ok", None, "[]",
                f"reproduction of {parent[2]}", None, val, round(val - 0.02, 4), "reproduction", parent_id,
                rng.choice(("finished", "finished", "finished", "failed", "interrupted")), stamp, stamp,
                None, None, None, None, json.dumps(job), f"{rng.getrandbits(256):064x}", round(rng.uniform(600, 9000), 1),
            )
        else:
            model = values["model"]
            name = f"{model}_{values.get('backbone', 'base')}_{values.get('criterion', 'multi_loss')}_{i:06d}"
            args = {**values, "run_name": name}
            args_raw = separator.join(part for part in (before, f"run_name={name!r}", after) if part)
            links = [f"https://wandb.ai/pstage12/jaesub/runs/{rng.getrandbits(40):010x}?workspace=user-shjas94"
                     for _ in range(rng.choice((1, 1, 1, 1, 2, 5)))]
            note = rng.choice(NOTES)
            if note:
                note = note.format(lb=f"{rng.uniform(0.5, 0.7):.4f}")
            cells = _imported_cells(name, day, model, args_raw, links, note)
            row = (
                i, i, name, day, model, args_raw, json.dumps(args), "ok", None, json.dumps(links), note,
                parse_lb(note), None, None, "logged", None, None, stamp, stamp, "experiments.md", i,
                json.dumps(cells, ensure_ascii=False), None, None, None, None,
            )
            if len(logged_ids) == logged_ids.maxlen:
                del recent[logged_ids[0]]
            logged_ids.append(i)
            recent[i] = row
        if i == runs // 2 or runs == 1:
            found["middle"] = name
        if len(first) < 50:
            first.append(row)
            if len(first) == 50 or i == runs:
                _check_rendering(first)
        yield row


def build_ledger(path: Path, runs: int, *, seed: int = 0) -> str:
    """Create a ledger at `path` with `runs` rows; return the name of the run in the middle.

    The rows go in at BULK_REVISION, through one executemany with the search triggers off
    (the search index is rebuilt once after); then the later migrations bring the ledger to
    the current schema, filling and indexing what they add for the rows already there, as
    they would on a user's ledger. A million runs take a few minutes.
    """
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    upgrade(engine, BULK_REVISION)
    engine.dispose()
    found: dict = {}
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA synchronous=OFF")  # a benchmark's file: a crash means building it again
        conn.execute("PRAGMA cache_size=-400000")  # 400 MB of pages, for the indexes
        triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'runs'").fetchall()
        with conn:
            for name, _ in triggers:
                conn.execute(f'DROP TRIGGER "{name}"')
            conn.executemany(f"INSERT INTO runs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                             _rows(runs, seed, found))
            conn.execute(
                "INSERT INTO documents (source, before, after, headers, aligns, aligned, newline, final_newline,"
                " updated_at) VALUES (?, ?, '', ?, ?, 0, ?, 1, ?)",
                ("experiments.md", "# 실험 기록\n\n", json.dumps(DEFAULT_HEADERS),
                 json.dumps(["---"] * len(DEFAULT_HEADERS)), "\n", "2026-11-28 12:00:00"),
            )
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (SEARCH_INDEX,)).fetchone():
                conn.execute(f"INSERT INTO {SEARCH_INDEX}({SEARCH_INDEX}) VALUES ('rebuild')")
            for _, sql in triggers:
                conn.execute(sql)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return found["middle"]


def _check_rendering(rows: list[tuple]) -> None:
    """The spliced Arguments cells are what render_arguments itself writes."""
    for row in rows:
        if row[14] == "logged":
            args = json.loads(row[6])
            separator = ", " if ", <br>" not in row[5] else ", <br>"
            assert render_arguments(args, separator=separator) == row[5], row[2]


def _run(cmd: list[str], env: dict, stdout, ok: tuple[int, ...] = (0,)) -> tuple[float, float, bytes]:
    """One run of `cmd`: wall seconds, CPU seconds (user + sys: hardly moved by background
    load), and what it wrote (stdout when piped, and stderr)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=subprocess.PIPE)
    out, err = b"", b""
    if stdout is subprocess.PIPE:
        out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime, out + err


def _peak_mib(cmd: list[str], env: dict, stdout) -> float | None:
    """The largest resident set of one run of `cmd`, in MiB, as GNU time reports it; None
    without /usr/bin/time. (A child's own getrusage would report this process's memory:
    Linux keeps the high-water mark of the memory a process had before exec.)"""
    if not Path("/usr/bin/time").exists():
        return None
    with tempfile.NamedTemporaryFile("r") as report:
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report.name, *cmd], env=env, stdout=stdout,
                       stderr=subprocess.DEVNULL)
        kib = report.read().strip().splitlines()
    return int(kib[-1]) / 1024 if kib and kib[-1].isdigit() else None


def _script(name: str) -> str:
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"cannot find the {name!r} command next to {sys.executable} or on PATH")
    return found


def typo_of(name: str) -> str:
    """`name` with two letters a third of the way in swapped: a typo only the trigram index
    of the names finds (the names around it in order start differently)."""
    at = next(i for i in range(len(name) // 3, len(name) - 1) if name[i] != name[i + 1])
    return name[:at] + name[at + 1] + name[at] + name[at + 2:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000, help="runs in the ledger (default 100000)")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds after one warm-up (default 7)")
    parser.add_argument("--keep", type=Path, help="build the ledger here and keep it; reuse it if it exists")
    parser.add_argument("--no-export", action="store_true", help="leave out the CSV export (minutes at 1M runs)")
    opts = parser.parse_args(argv)

    tmp = None
    if opts.keep is not None:
        path = opts.keep.resolve()
    else:
        tmp = tempfile.TemporaryDirectory(prefix="ledger-bench-")
        path = Path(tmp.name) / "runs.db"
    try:
        if path.exists():
            with sqlite3.connect(path) as conn:
                count = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
                middle = conn.execute(
                    "SELECT name FROM runs ORDER BY position LIMIT 1 OFFSET ?", (count // 2 - 1 if count > 1 else 0,)
                ).fetchone()[0]
            print(f"reusing {path}: {count} runs (--runs ignored)")
        else:
            start = time.perf_counter()
            middle = build_ledger(path, opts.runs)
            count = opts.runs
            print(f"built {count} runs in {time.perf_counter() - start:.1f} s at {path} "
                  f"({path.stat().st_size / 1e6:.0f} MB)")
        return _bench(path, count, middle, opts.repeats, export=not opts.no_export)
    finally:
        if tmp is not None:
            tmp.cleanup()


# Targets of issue 14 (seconds, median wall on the project's 2-core machine).
START_MAX_S = 0.1  # --help, --version
READ_MAX_S = 0.15  # list, list --where, list --sort, show
SUGGEST_MAX_S = 0.2  # show of a name with a typo
SQLITE_UTILS_RATIO = 5  # read commands at least this many times faster than sqlite-utils rows
LIST_MAX_MIB = 60


def _bench(path: Path, count: int, middle: str, repeats: int, *, export: bool = True) -> int:
    ledger, sqlite_utils = _script("ledger"), _script("sqlite-utils")
    # .pyc files as a user has them: this environment may forbid writing them (every
    # import would then compile its source, in every process).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(LEDGER_DB=str(path), COLUMNS="160")
    pipe, null = subprocess.PIPE, subprocess.DEVNULL
    nosuch = typo_of(middle)
    commands = {
        "python -c pass": ([sys.executable, "-c", "pass"], pipe, (0,)),
        "ledger --help": ([ledger, "--help"], pipe, (0,)),
        "ledger --version": ([ledger, "--version"], pipe, (0,)),
        "ledger list --limit 20": ([ledger, "list", "--limit", "20"], pipe, (0,)),
        "ledger list --json --limit 20": ([ledger, "list", "--json", "--limit", "20"], pipe, (0,)),
        "ledger list --where lr=0.5 --limit 20": ([ledger, "list", "--where", "lr=0.5", "--limit", "20"], pipe, (0,)),
        "ledger list --where lr=0.0001 --limit 20": ([ledger, "list", "--where", "lr=0.0001", "--limit", "20"], pipe,
                                                     (0,)),
        "ledger list --sort -lb_miou --limit 5": ([ledger, "list", "--sort", "-lb_miou", "--limit", "5"], pipe, (0,)),
        "ledger show MIDDLE": ([ledger, "show", middle], pipe, (0,)),
        "ledger show NOSUCH": ([ledger, "show", nosuch], pipe, (1,)),
        "sqlite-utils rows --limit 20 --table": ([sqlite_utils, "rows", str(path), "runs", "--limit", "20", "--table"],
                                                 pipe, (0,)),
    }
    if export:
        commands["ledger export --format csv"] = ([ledger, "export", "--format", "csv"], null, (0,))
    load_before = loadavg()
    times: dict[str, list[float]] = {label: [] for label in commands}
    cpu: dict[str, list[float]] = {label: [] for label in commands}
    said: dict[str, bytes] = {}
    for round_ in range(repeats + 1):
        for label, (cmd, out, ok) in commands.items():
            elapsed, used, text = _run(cmd, env, out, ok)
            if round_ == 0:  # the warm-up: page cache, .pyc files
                said[label] = text
                continue
            times[label].append(elapsed)
            cpu[label].append(used)
    med = {label: statistics.median(values) for label, values in times.items()}
    peak = {label: _peak_mib(cmd, env, out) for label, (cmd, out, _) in commands.items()}

    print(f"\n{count} runs; median of {repeats} after 1 warm-up; cpus={os.cpu_count()}; "
          f"load average before {load_before}, after {loadavg()}")
    print(f"show runs {middle!r}; NOSUCH is {nosuch!r}")
    floor, yard = med["python -c pass"], med["sqlite-utils rows --limit 20 --table"]
    width = max(map(len, commands))
    print(f"{'command':<{width}}  {'median s':>8}  {'min s':>6}  {'max s':>6}  {'cpu s':>6}  {'peak MiB':>8}"
          f"  {'/ sqlite-utils':>14}  {'/ python':>8}")
    for label in commands:
        print(f"{label:<{width}}  {med[label]:>8.3f}  {min(times[label]):>6.3f}  {max(times[label]):>6.3f}"
              f"  {statistics.median(cpu[label]):>6.3f}  {_mib(peak[label]):>8}  {med[label] / yard:>14.2f}"
              f"  {med[label] / floor:>8.1f}")
    print("(wall seconds; cpu s: median user+sys of the process, a check on how much load inflated wall time;"
          " peak: its largest resident set, one more run under /usr/bin/time)")
    if middle.encode() not in said["ledger show NOSUCH"]:
        print(f"note: `ledger show {nosuch}` did not suggest {middle}: {said['ledger show NOSUCH'][-300:]!r}")

    checks = [(f"{label} <= {START_MAX_S:g} s", med[label], START_MAX_S)
              for label in ("ledger --help", "ledger --version")]
    for label in ("ledger list --limit 20", "ledger list --where lr=0.5 --limit 20",
                  "ledger list --sort -lb_miou --limit 5", "ledger show MIDDLE"):
        checks.append((f"{label} <= {READ_MAX_S:g} s", med[label], READ_MAX_S))
        checks.append((f"{label} {SQLITE_UTILS_RATIO}x faster than sqlite-utils rows", med[label] * SQLITE_UTILS_RATIO,
                       yard))
    checks.append((f"ledger show NOSUCH <= {SUGGEST_MAX_S:g} s", med["ledger show NOSUCH"], SUGGEST_MAX_S))
    if peak["ledger list --limit 20"] is not None:
        checks.append((f"ledger list --limit 20 peak memory < {LIST_MAX_MIB} MiB", peak["ledger list --limit 20"],
                       LIST_MAX_MIB))
    failed = 0
    for text, value, bound in checks:
        ok = value <= bound
        failed += not ok
        print(f"{'PASS' if ok else 'MISS'}  {text}: {value:.3f} vs {bound:.3f}")
    return 1 if failed else 0


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    sys.exit(main())
