"""Several processes writing one ledger at once: is any write lost, any position taken twice?

Each of ``--processes`` processes makes ``--writes`` writes through the real command line
(Typer's CliRunner, in-process, so start-up time does not dilute the contention): half of
them `ledger set SHARED --note ...` on one run that every process edits, a quarter `set` on
a run of its own, a quarter `ledger import` of a one-row log that adds a run. Then it
counts what a user would call a failure: a note that is missing or doubled, an imported
run that is missing, two runs at one position, a "database is locked", a traceback, a
command that exited non-zero.

    python benchmarks/concurrent_writes.py                      # SQLite, 8 x 100
    python benchmarks/concurrent_writes.py --db postgresql+psycopg://postgres@127.0.0.1:5432/test
    python benchmarks/concurrent_writes.py --json               # the figures as JSON (the test reads them)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

SHARED = "shared_run"
HEADER = "| Date | Run Name | Model Name | Arguments | WanDB Link | ETC |\n| --- | --- | --- | --- | --- | --- |\n"


def _row(name: str) -> str:
    return f"| 2026-12-01 | {name} | DeepLabV3 | Namespace(lr=0.0001) | None | None |\n"


def _note(process: int, write: int) -> str:
    return f"[p{process}-w{write}]"


def _own(process: int) -> str:
    return f"own_run_{process}"


def _worker(db: str, process: int, writes: int, folder: str, queue) -> None:
    os.environ["LEDGER_DB"] = db
    from typer.testing import CliRunner

    from ledger.cli import app

    runner = CliRunner()
    failures: list[str] = []
    waits: list[float] = []
    for write in range(writes):
        kind = write % 4
        if kind in (0, 1):
            args = ["set", SHARED, "--note", _note(process, write)]
        elif kind == 2:
            args = ["set", _own(process), "--note", _note(process, write)]
        else:
            log = Path(folder) / f"p{process}_w{write}.md"
            log.write_text(HEADER + _row(f"p{process}_w{write}"), encoding="utf-8")
            args = ["import", str(log)]
        started = time.perf_counter()
        result = runner.invoke(app, args)
        waits.append(time.perf_counter() - started)
        if result.exit_code != 0 or result.exception is not None and not isinstance(result.exception, SystemExit):
            text = result.output + (result.stderr if result.stderr_bytes is not None else "")
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                text += f" Traceback: {result.exception!r}"
            failures.append(f"{' '.join(args)}: exit {result.exit_code}: {text.strip()[:300]}")
    queue.put({"process": process, "failures": failures, "seconds": waits})


def setup(db: str, processes: int, folder: Path) -> None:
    """A ledger with the shared run and one run per process."""
    os.environ["LEDGER_DB"] = db
    from typer.testing import CliRunner

    from ledger.cli import app

    log = folder / "start.md"
    log.write_text(HEADER + "".join(_row(n) for n in [SHARED, *(_own(p) for p in range(processes))]),
                   encoding="utf-8")
    result = CliRunner().invoke(app, ["import", str(log)])
    if result.exit_code != 0:
        raise SystemExit(f"setup failed: {result.output}")


def count(db: str, processes: int, writes: int, reports: list[dict]) -> dict:
    """The figures: what was lost, doubled or refused."""
    from sqlalchemy import func, select

    from ledger.store.db import open_ledger, transaction
    from ledger.store.models import Run

    engine = open_ledger(db)
    with transaction(engine, write=False) as session:
        notes = {run.name: run.notes or "" for run in session.scalars(select(Run))}
        positions = list(session.scalars(select(Run.position)))
        runs = session.scalar(select(func.count()).select_from(Run))
    engine.dispose()
    lost = doubled = missing_rows = 0
    for p in range(processes):
        for w in range(writes):
            kind = w % 4
            if kind == 3:
                missing_rows += f"p{p}_w{w}" not in notes
                continue
            seen = notes[SHARED if kind in (0, 1) else _own(p)].count(_note(p, w))
            lost += seen == 0
            doubled += seen > 1
    failures = [f for r in reports for f in r["failures"]]
    seconds = sorted(s for r in reports for s in r["seconds"])
    return {
        "processes": processes, "writes_per_process": writes, "runs": runs,
        "lost_notes": lost, "doubled_notes": doubled, "missing_imported_runs": missing_rows,
        "duplicate_positions": len(positions) - len(set(positions)),
        "locked_errors": sum("locked" in f for f in failures),
        "tracebacks": sum("Traceback" in f for f in failures),
        "failed_commands": len(failures), "first_failures": failures[:3],
        "median_write_s": seconds[len(seconds) // 2] if seconds else None,
        "slowest_write_s": seconds[-1] if seconds else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="a SQLAlchemy URL of an empty database; default: a new SQLite file")
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--writes", type=int, default=100, help="writes per process (default 100)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ledger-concurrent-") as tmp:
        folder = Path(tmp)
        db = opts.db or str(folder / "ledger.db")
        setup(db, opts.processes, folder)
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        workers = [context.Process(target=_worker, args=(db, p, opts.writes, tmp, queue))
                   for p in range(opts.processes)]
        started = time.perf_counter()
        for w in workers:
            w.start()
        reports = [queue.get(timeout=600) for _ in workers]
        for w in workers:
            w.join()
        wall = time.perf_counter() - started
        figures = count(db, opts.processes, opts.writes, reports) | {"wall_s": round(wall, 2)}
    figures["database"] = "sqlite" if opts.db is None or opts.db.startswith("sqlite") else opts.db.split(":")[0]
    if opts.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>24}: {value}")
    bad = ("lost_notes", "doubled_notes", "missing_imported_runs", "duplicate_positions", "failed_commands")
    return 1 if any(figures[k] for k in bad) else 0


if __name__ == "__main__":
    sys.exit(main())
