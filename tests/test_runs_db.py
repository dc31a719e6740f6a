"""The committed runs.db holds exactly what importing tests/data/experiments.md gives."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path


from conftest import REPO, RUNS_DB, SEED
from ledger.store.db import open_ledger, transaction
from ledger.store.importer import import_file

VOLATILE = {"created_at", "updated_at", "imported_at", "id"}


def snapshot(path: Path) -> dict[str, list[tuple]]:
    # Read-only: no test may write the committed file.
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out = {}
        for table in ("runs", "metrics", "documents", "imports", "alembic_version"):
            cursor = conn.execute(f"SELECT * FROM {table}")
            names = [d[0] for d in cursor.description]
            keep = [i for i, n in enumerate(names) if n not in VOLATILE]
            out[table] = sorted(tuple(row[i] for i in keep) for row in cursor.fetchall())
        return out
    finally:
        conn.close()


def shipped_runs_db(tmp_path: Path) -> Path:
    """runs.db as committed: a user's own runs (the README's main job appends one) live
    in the working copy and are not what ships."""
    out = subprocess.run(["git", "-C", str(REPO), "show", "HEAD:runs.db"], capture_output=True)
    if out.returncode != 0:  # not a git checkout: the file is what ships
        return RUNS_DB
    path = tmp_path / "shipped.db"
    path.write_bytes(out.stdout)
    return path


def test_runs_db_matches_the_seed_log(tmp_path, monkeypatch):
    assert RUNS_DB.exists(), "runs.db is missing from the repository"
    shipped = shipped_runs_db(tmp_path)
    monkeypatch.chdir(REPO)  # the import records the path as given, like the one that built runs.db
    fresh = tmp_path / "fresh.db"
    engine = open_ledger(str(fresh), create=True)
    with transaction(engine) as session:
        import_file(session, SEED.relative_to(REPO))
    engine.dispose()
    assert snapshot(shipped) == snapshot(fresh)
