"""How the commands that read every run scale: export, check, history (and compare, which
reads two), each a process of its own, against `sqlite3 -csv` dumping the same file.

Builds ``--runs`` synthetic runs with the builder of `cli_latency.py` (the seed log's
shape), then times each command in interleaved rounds after one warm-up round, stdout to
/dev/null, and reports the median wall time, the median CPU time and the largest peak
memory (max RSS) of each. The `write_flat` and `iter_history` lines run the library's
streaming functions directly, without the command line's start-up and printing (the
commands stream too: their memory does not grow with the runs either).

    python benchmarks/analysis_scale.py --runs 10000
    python benchmarks/analysis_scale.py --runs 100000 --repeats 3 --keep /tmp/lb/100k.db
    python benchmarks/analysis_scale.py --runs 1000000 --repeats 1 --only export,check --keep /tmp/lb/1m.db
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import loadavg  # noqa: E402  (benchmarks run as scripts; the folder is on sys.path)

HERE = Path(__file__).resolve().parent

# Targets of issue 14 (wall seconds) by number of runs; "2x" is against sqlite3 -csv.
CHECK_MAX_S = {100_000: 5.0, 1_000_000: 60.0}
HISTORY_MAX_S = {100_000: 10.0}
EXPORT_RATIO_MAX = 2.0
PEAK_MAX_MIB = 200

STREAM_EXPORT = "\n".join([
    "import sys",
    "from ledger.store.export import write_flat",
    "from ledger.store.readers import reading",
    "out = open(sys.stdout.fileno(), 'w', encoding='utf-8', newline='', buffering=1 << 20, closefd=False)",
    "with reading(None) as reader:",
    "    write_flat(reader.source, sys.argv[1], out)",
    "out.flush()",
])
STREAM_HISTORY = "\n".join([
    "from ledger.analysis.history import iter_history",
    "from ledger.store.db import open_ledger, transaction",
    "with transaction(open_ledger(None, read_only=True), write=False) as session:",
    "    print(sum(1 for entry in iter_history(session) if entry.to_dict()))",
])


def _run_once(cmd: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + sys) and peak memory (MiB) of one process.

    The peak is the child's max RSS, which counts the moment between fork and exec: this
    process's own size is its floor (the `true` line shows it).
    """
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, max RSS included
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode not in ok:
            errors.seek(0)
            said = errors.read().decode(errors="replace")[-2000:]
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {said}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def _two_runs(path: Path) -> tuple[str, str]:
    """Two logged runs from the middle of the ledger, for `compare`."""
    with sqlite3.connect(path) as conn:
        count = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        names = [n for (n,) in conn.execute(
            "SELECT name FROM runs WHERE kind = 'logged' ORDER BY position LIMIT 2 OFFSET ?", (count // 2,))]
    return names[0], names[1]


def _commands(path: Path, only: set[str]) -> dict[str, list[str]]:
    ledger = shutil.which("ledger", path=str(Path(sys.executable).parent)) or shutil.which("ledger")
    if ledger is None:
        raise SystemExit(f"cannot find the ledger command next to {sys.executable} or on PATH")
    a, b = _two_runs(path)
    commands: dict[str, list[str]] = {"true (the floor of peak memory)": [shutil.which("true") or "true"]}
    if "export" in only:
        sqlite = shutil.which("sqlite3")
        if sqlite is None:
            print("sqlite3 is not installed: no yardstick for the export")
        else:
            commands["sqlite3 -csv FILE 'select * from runs'"] = [sqlite, "-csv", str(path), "select * from runs"]
        commands["ledger export --format csv"] = [ledger, "export", "--format", "csv"]
        commands["ledger export --format json"] = [ledger, "export", "--format", "json"]
        commands["write_flat csv (streamed)"] = [sys.executable, "-c", STREAM_EXPORT, "csv"]
        commands["write_flat json (streamed)"] = [sys.executable, "-c", STREAM_EXPORT, "json"]
    if "check" in only:
        commands["ledger check --json"] = [ledger, "check", "--json"]
    if "history" in only:
        commands["ledger history --json"] = [ledger, "history", "--json"]
        commands["ledger history --format md"] = [ledger, "history", "--format", "md"]
        commands["iter_history (streamed)"] = [sys.executable, "-c", STREAM_HISTORY]
    if "compare" in only:
        commands["ledger compare A B --json"] = [ledger, "compare", a, b, "--json"]
    return commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000, help="runs in the ledger (default 100000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up (default 3)")
    parser.add_argument("--keep", type=Path, help="build the ledger here and keep it; reuse it if it exists")
    parser.add_argument("--only", default="export,check,history,compare",
                        help="comma-separated: export, check, history, compare (default: all)")
    opts = parser.parse_args(argv)
    only = set(opts.only.split(","))
    if only - {"export", "check", "history", "compare"}:
        parser.error(f"--only: unknown {', '.join(sorted(only - {'export', 'check', 'history', 'compare'}))}")

    tmp = None
    if opts.keep is not None:
        path = opts.keep.resolve()
    else:
        tmp = tempfile.TemporaryDirectory(prefix="ledger-scale-")
        path = Path(tmp.name) / "runs.db"
    try:
        if path.exists():
            with sqlite3.connect(path) as conn:
                count = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
            print(f"reusing {path}: {count} runs (--runs ignored)")
        else:
            # In a process of its own: this one stays small, and a child's peak memory counts
            # what it had before it started the command (see `_run_once`).
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import sys; from cli_latency import build_ledger; "
                            "build_ledger(__import__('pathlib').Path(sys.argv[1]), int(sys.argv[2]))",
                            str(path), str(opts.runs)], cwd=HERE, check=True)
            count = opts.runs
            print(f"built {count} runs in {time.perf_counter() - start:.1f} s at {path} "
                  f"({path.stat().st_size / 1e6:.0f} MB)")
        return _bench(path, count, _commands(path, only), opts.repeats)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _bench(path: Path, count: int, commands: dict[str, list[str]], repeats: int) -> int:
    env = {**os.environ, "LEDGER_DB": str(path)}
    load_before = loadavg()
    walls: dict[str, list[float]] = {label: [] for label in commands}
    cpus: dict[str, list[float]] = {label: [] for label in commands}
    peaks: dict[str, float] = {label: 0.0 for label in commands}
    for round_ in range(repeats + 1):
        for label, cmd in commands.items():
            # `ledger check` exits 1 when it finds an error (a random link can repeat at 1M runs).
            wall, cpu, peak = _run_once(cmd, env, (0, 1) if "check" in cmd else (0,))
            peaks[label] = max(peaks[label], peak)
            if round_ > 0:  # round 0 warms the page cache and .pyc files
                walls[label].append(wall)
                cpus[label].append(cpu)
    med = {label: statistics.median(values) for label, values in walls.items()}

    print(f"\n{count} runs; median of {repeats} after 1 warm-up; cpus={os.cpu_count()}; "
          f"load average before {load_before}, after {loadavg()}")
    width = max(map(len, commands))
    print(f"{'command':<{width}}  {'median s':>9}  {'min s':>7}  {'max s':>7}  {'cpu s':>7}  {'peak MiB':>8}")
    for label in commands:
        print(f"{label:<{width}}  {med[label]:>9.3f}  {min(walls[label]):>7.3f}  {max(walls[label]):>7.3f}"
              f"  {statistics.median(cpus[label]):>7.3f}  {peaks[label]:>8.0f}")
    print("(wall seconds; cpu s = median user+sys of the process; peak = its largest max RSS)")

    checks: list[tuple[str, bool]] = []
    yard = med.get("sqlite3 -csv FILE 'select * from runs'")
    if yard:
        for label in ("ledger export --format csv", "ledger export --format json", "write_flat csv (streamed)",
                      "write_flat json (streamed)"):
            if label in med:
                ratio = med[label] / yard
                checks.append((f"{label} within {EXPORT_RATIO_MAX:g}x of sqlite3 -csv: {ratio:.2f}x "
                               f"({med[label]:.3f} s vs {yard:.3f} s)", ratio <= EXPORT_RATIO_MAX))
    for label, limits in (("ledger check --json", CHECK_MAX_S), ("ledger history --json", HISTORY_MAX_S),
                          ("ledger history --format md", HISTORY_MAX_S)):
        if label in med and count in limits:
            checks.append((f"{label} of {count} runs under {limits[count]:g} s: {med[label]:.3f} s",
                           med[label] <= limits[count]))
    for label in ("ledger export --format csv", "ledger export --format json", "write_flat csv (streamed)",
                  "write_flat json (streamed)", "ledger check --json", "ledger history --json",
                  "ledger history --format md", "iter_history (streamed)"):
        if label in peaks:
            checks.append((f"{label} peak memory under {PEAK_MAX_MIB} MiB: {peaks[label]:.0f} MiB",
                           peaks[label] < PEAK_MAX_MIB))
    for text, ok in checks:
        print(f"{'PASS' if ok else 'MISS'}  {text}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
