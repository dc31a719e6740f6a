"""The queue itself, measured: claim latency and jobs per second with 1, 4 and 8 workers.

Queues ``--jobs`` no-op rows (a command row whose job is done the moment it is claimed),
then starts N worker processes that each loop `ledger.queue.claim` -> mark finished until
nothing is left, on SQLite (one shared file) and, with ``--pg URL``, on PostgreSQL. It
prints, per backend and worker count: jobs per second over the whole drain, the median and
95th-percentile claim latency, and whether any row was claimed twice (it must be 0).

    python benchmarks/queue_throughput.py
    python benchmarks/queue_throughput.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/test --jobs 400
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _fill(url: str, jobs: int) -> None:
    from ledger.store.db import open_ledger, transaction
    from ledger.store.models import Run

    engine = open_ledger(url, create=True)
    with transaction(engine) as session:
        for i in range(jobs):
            session.add(Run(name=f"noop{i:05d}", position=i + 1, kind="logged", status="queued", links=[],
                            args_status="none", command={"argv": ["true"]}, queue={"max_attempts": 3}))
    engine.dispose()


def _drain(url: str, name: str, results) -> None:
    from ledger import queue
    from ledger.store.db import open_ledger, transaction
    from ledger.store.models import Run

    engine = open_ledger(url)
    latencies, claimed = [], []
    while True:
        started = time.perf_counter()
        run_id = queue.claim(engine, name, None, None)
        latencies.append(time.perf_counter() - started)
        if run_id is None:
            break
        claimed.append(run_id)
        with transaction(engine) as session:
            session.get(Run, run_id).status = "finished"
    results.put((claimed, latencies))


def _prepare_pg(url: str) -> str:
    import sqlalchemy

    schema = f"bench_queue_{os.getpid()}"
    admin = sqlalchemy.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def _drop_pg(url: str) -> None:
    import sqlalchemy

    admin = sqlalchemy.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f'DROP SCHEMA IF EXISTS "bench_queue_{os.getpid()}" CASCADE'))
    admin.dispose()


def run(url: str, workers: int, jobs: int) -> dict:
    _fill(url, jobs)
    results = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_drain, args=(url, f"bench{i}", results)) for i in range(workers)]
    started = time.perf_counter()
    for p in procs:
        p.start()
    outcomes = [results.get() for _ in procs]
    for p in procs:
        p.join()
    wall = time.perf_counter() - started
    claimed = [r for ids, _ in outcomes for r in ids]
    latencies = sorted(l for _, lats in outcomes for l in lats)
    return {"workers": workers, "jobs": len(claimed), "twice": len(claimed) - len(set(claimed)),
            "jobs_per_s": len(claimed) / wall, "claim_median_ms": 1000 * statistics.median(latencies),
            "claim_p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--pg", help="a PostgreSQL URL to measure too")
    parser.add_argument("--workers", default="1,4,8")
    opts = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    rows = []
    for count in [int(w) for w in opts.workers.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(("sqlite", run(str(Path(tmp) / "queue.db"), count, opts.jobs)))
        if opts.pg:
            url = _prepare_pg(opts.pg)
            try:
                rows.append(("postgresql", run(url, count, opts.jobs)))
            finally:
                _drop_pg(opts.pg)
    print(f"{'backend':<11} {'workers':>7} {'jobs':>5} {'jobs/s':>8} {'claim p50 ms':>13} {'claim p95 ms':>13} "
          f"{'claimed twice':>14}")
    for backend, r in rows:
        print(f"{backend:<11} {r['workers']:>7} {r['jobs']:>5} {r['jobs_per_s']:>8.1f} {r['claim_median_ms']:>13.1f} "
              f"{r['claim_p95_ms']:>13.1f} {r['twice']:>14}")


if __name__ == "__main__":
    main()
