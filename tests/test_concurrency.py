"""Several processes writing one ledger at once lose nothing (benchmarks/concurrent_writes.py).

8 processes x 100 writes through the command line: notes appended to one shared run and
to a run of each process's own, and imports adding runs. Every note is there once, every
imported run exists, no position is taken twice, and no command failed, said "database is
locked" or raised."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_concurrent_notes_and_imports_lose_nothing(db_url):
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "concurrent_writes.py"), "--db", db_url, "--processes", "8",
         "--writes", "100", "--json"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.stdout.strip(), proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["first_failures"] == []
    assert figures["runs"] == 1 + 8 + 8 * 25  # the shared run, one per process, the imported ones
    for key in ("lost_notes", "doubled_notes", "missing_imported_runs", "duplicate_positions", "locked_errors",
                "tracebacks", "failed_commands"):
        assert figures[key] == 0, (key, figures)
    assert proc.returncode == 0
