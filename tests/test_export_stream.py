"""The streamed flat export (CSV and JSON) writes byte for byte what the export wrote when
it built a pandas DataFrame of every run, on both read paths and on PostgreSQL, and
without holding the runs in memory.

`tests/data/flat_export_varied.{csv,json}` and `flat_export_nan.{csv,json}` were written by
that old implementation (pandas 3.1) from the ledgers `_varied` and `_nan` build below (then
given the empty `section` column the export gained after `updated_at`, by csv.writer, which
writes those files' other cells as they were);
`reference_flat` is the same old recipe, kept small, for the ledgers a fixture cannot pin
(PostgreSQL's times carry their zone)."""

from __future__ import annotations

import io
import json
import sqlite3
import tracemalloc
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import aliased

from conftest import DATA
from ledger.store.db import open_ledger, transaction
from ledger.store.export import FLAT_COLUMNS, FLAT_OBJECTS, export_flat, write_flat
from ledger.store.models import Run
from ledger.store.readers import reading
from ledger.store.sqlite_reader import SqliteReader

T0 = datetime(2026, 1, 2, 3, 4, 5)
T1 = datetime(2026, 1, 2, 3, 4, 5, 120)

# One run per entry: (args, extra fields). Keys present in some rows only, every JSON type,
# ints that pandas shows as floats (a gap or a float in the column) and ints it does not,
# text the CSV must quote, non-ASCII, slashes (escaped in JSON), big and unsigned ints.
VARIED = [
    ({"always": 1, "gappy": 3, "mixed": 1, "flag": True, "both": True, "ratio": 1e-05, "name": "plain",
      "a/b": "x/y", 'quo"te,key': 1, "nested": {"k": [None, "한"]}, "uint": 2**63},
     dict(notes='note, with "quote"', date="2021-04-30", model="DeepLabV3", lb_miou=0.5437, links=["https://x/a"])),
    ({"always": 2, "mixed": "two", "flag": False, "both": None, "ratio": 0.1 + 0.2, "name": 'has "quotes", commas',
      "list": [1, "two", 3.5], "uint": 2**64 - 1, "neg": -5},
     dict(notes="line\nbreak\r\nand \r", date="", lb_miou=None, val_miou=0.5, links=["a b", "c,d"])),
    ({"always": 3, "gappy": None, "mixed": 2.5, "flag": True, "ratio": 1e-20, "name": "한글 ünï ✓ 🙂",
      "big": 10**20, "neg": -2**63},
     dict(notes=None, model=None, lb_miou=1e16, lb_val_miou=-0.0, links=["https://x/한글"])),
    ({"always": 4, "gappy": 7, "ratio": 123456.789, "name": "", "empty": "", "float_int": 2},
     dict(notes="", status="finished", val_miou=0.1234567890123, links=[])),
    ({"always": 5, "ratio": 16.0, "name": "tab\there", "float_int": 2.0, "neg": 0},
     dict(notes="a,b", status="failed", lb_miou=0.99999999995, links=["x"] * 3, kind="reproduction")),
    ({}, dict(notes="{}: every key missing", links=[])),
    (None, dict(notes="no arguments", links=[], args_status="none")),
]


def _varied(session) -> None:
    parent = None
    for i, (args, extra) in enumerate(VARIED):
        fields = dict(name=f"run_{i}", position=i, args_status="ok", args=args, created_at=T1 if i % 2 else T0,
                      updated_at=T0, args_raw=None if args is None else f"a={i}, b='x'", job_hash=f"{i:064x}"[:64])
        fields.update(extra)
        run = Run(**fields)
        if fields.get("kind") == "reproduction":
            run.parent = parent
        session.add(run)
        parent = run
    session.flush()
    # Rows another program wrote: SQL NULL arguments, JSON null links, a time in ISO form with a zone.
    session.execute(text("UPDATE runs SET args = NULL, links = 'null' WHERE name = 'run_6'"))
    session.execute(text("UPDATE runs SET updated_at = '2026-01-02T03:04:05+00:00' WHERE name = 'run_1'"))


def _nan(session) -> None:
    # NaN and infinities: JSON text SQLite's JSON functions refuse, and a REAL column's inf.
    for i, args in enumerate([{"x": float("nan"), "y": 1}, {"x": 2, "y": float("inf"), "z": "s"}, {"x": 3}]):
        session.add(Run(name=f"nan_{i}", position=i, args_status="ok", args=args, links=[], created_at=T0,
                        updated_at=T0, lb_miou=float("inf") if i == 1 else None, notes=None))


def _ledger(tmp_path: Path, fill) -> Path:
    path = tmp_path / f"flat{len(list(tmp_path.iterdir()))}.db"
    engine = open_ledger(str(path), create=True)
    with transaction(engine) as session:
        fill(session)
    engine.dispose()
    return path


def reference_flat(session, fmt: str) -> str:
    """The flat export as the old implementation wrote it: a dict per run, then pandas."""
    import pandas as pd

    parent = aliased(Run)
    fields = [getattr(Run, c) if c else parent.name for c in
              ("name", "date", "model", "kind", None, "status", "lb_miou", "val_miou", "lb_val_miou", "links",
               "notes", "args_raw", "args_status", "job_hash", "created_at", "updated_at", "section")]
    objects = [getattr(Run, c) for c in FLAT_OBJECTS]
    query = select(*fields, *objects).outerjoin(parent, Run.parent_id == parent.id).order_by(Run.position, Run.id)
    records = []
    for row in session.execute(query):
        record = dict(zip(FLAT_COLUMNS, row))
        record["links"] = " ".join(record["links"] or [])
        for key in ("created_at", "updated_at"):
            record[key] = record[key].isoformat() if record[key] is not None else None
        for column, value in zip(FLAT_OBJECTS, row[len(FLAT_COLUMNS):]):
            for key, item in (value or {}).items():
                record[f"{column}.{key}"] = json.dumps(item) if isinstance(item, (list, dict)) else item
        records.append(record)
    flattened = [sorted({k for r in records for k in r if k.startswith(f"{c}.")}) for c in FLAT_OBJECTS]
    frame = pd.DataFrame.from_records(records, columns=list(FLAT_COLUMNS) + [k for keys in flattened for k in keys])
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n")
    return frame.to_json(orient="records", force_ascii=False, indent=2) + "\n"


def _both_paths(path: Path, fmt: str) -> tuple[str, str]:
    with reading(str(path)) as reader:
        assert isinstance(reader, SqliteReader)
        fast = export_flat(reader.source, fmt)
    engine = open_ledger(str(path))
    with transaction(engine, write=False) as session:
        slow = export_flat(session, fmt)
    engine.dispose()
    return fast, slow


@pytest.mark.parametrize("fmt", ["csv", "json"])
@pytest.mark.parametrize("name", ["varied", "nan"])
def test_flat_export_is_the_old_implementations_bytes(tmp_path, name, fmt):
    path = _ledger(tmp_path, {"varied": _varied, "nan": _nan}[name])
    expected = (DATA / f"flat_export_{name}.{fmt}").read_bytes().decode("utf-8")  # its \r\n as written
    fast, slow = _both_paths(path, fmt)
    assert fast == expected
    assert slow == expected


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_flat_export_matches_the_pandas_recipe_on_every_database(db_url, fmt):
    engine = open_ledger(db_url, create=True)
    with transaction(engine) as session:
        _varied(session)
    with transaction(engine, write=False) as session:
        expected = reference_flat(session, fmt)
        assert export_flat(session, fmt) == expected
    engine.dispose()



@pytest.mark.parametrize("fmt", ["csv", "json"])
@pytest.mark.parametrize("rows", [
    [{"only": 1}, {}],  # one int column with a gap: floats
    [{"n": 1}, {"n": 2}],  # ints everywhere: ints
    [{"a": "x", "n": 1}, {"a": "y", "n": 2}],  # ints everywhere, not the first key
    [{"n": 1}, {"s": 'x, "n": 1', 't': '{"n": 2'}],  # a gap, the key's text inside strings
    [{"n": 1}, {'a"n': 2}],  # a gap, the key's text inside another key
    [{"n": 1}, {"n": None}],  # an explicit null: floats
    [{"n": 1}, {"n": True}],  # a bool among ints: as written
    [{"n": 1}, {"n": "a\nb"}],  # a line break in a mixed column
    [{"n": -1}, {"n": 2**63}],  # signed and unsigned: as written
    [{"n": 2**63}, {}],  # unsigned with a gap: floats
    [{"n": 10**20}, {}],  # beyond 64 bits: as written
    [{"b": True}, {"b": False}],
    [{"b": True}, {}],
    [{"e": []}, {"e": {}}, {"e": [{"deep": "é"}]}],
    [{}],
    [],
], ids=lambda rows: json.dumps(rows)[:40])
def test_flat_export_column_types(tmp_path, rows, fmt):
    def fill(session):
        for i, args in enumerate(rows):
            session.add(Run(name=f"r{i}", position=i, args_status="ok", args=args, links=[], created_at=T0,
                            updated_at=T0))

    path = _ledger(tmp_path, fill)
    engine = open_ledger(str(path))
    with transaction(engine, write=False) as session:
        expected = reference_flat(session, fmt)
    engine.dispose()
    fast, slow = _both_paths(path, fmt)
    assert fast == expected
    assert slow == expected


def _many(tmp_path: Path, runs: int) -> Path:
    path = tmp_path / f"many{runs}.db"
    open_ledger(str(path), create=True).dispose()
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO runs (position, name, args_raw, args, args_status, links, notes, kind, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, 'ok', ?, ?, 'logged', '2026-01-02 03:04:05.000001', '2026-01-02 03:04:05.000000')",
            [(i, f"run_{i:06d}", f"lr={i}", json.dumps({"lr": i * 1e-6, "seed": i, "tag": f"t{i % 7}"}),
              json.dumps([f"https://wandb.ai/x/runs/{i}"]), f"note {i}, 한글" * 4) for i in range(runs)])
    conn.close()
    return path


class _Sink(io.TextIOBase):
    """A stream that counts what it is given and keeps nothing."""

    size = 0

    def write(self, text: str) -> int:
        self.size += len(text)
        return len(text)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_flat_export_memory_does_not_grow_with_the_runs(tmp_path, fmt):
    peaks, sizes = [], []
    for runs in (4_000, 16_000):
        sink = _Sink()
        with reading(str(_many(tmp_path, runs))) as reader:
            tracemalloc.start()
            write_flat(reader.source, fmt, sink)
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        sizes.append(sink.size)
    assert sizes[1] > 3.9 * sizes[0]
    # Four times the runs, the same peak give or take (a chunk of runs and its text).
    assert peaks[1] < 1.25 * peaks[0], (peaks, sizes)


def test_a_ledger_changed_between_the_passes_is_an_error(tmp_path, monkeypatch):
    from ledger.core.errors import LedgerError
    from ledger.store import export

    path = _ledger(tmp_path, _varied)
    engine = open_ledger(str(path))
    real = export._session_stats

    def stats_then_write(session):
        found = real(session)
        session.execute(text("UPDATE runs SET args = '{\"late\": 1}' WHERE name = 'run_5'"))
        return found

    monkeypatch.setattr(export, "_session_stats", stats_then_write)
    with transaction(engine, write=True) as session, pytest.raises(LedgerError, match="changed while"):
        export_flat(session, "csv")
    engine.dispose()


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_the_flat_export_imports_neither_pandas_nor_numpy(tmp_path, fmt):
    import os
    import subprocess
    import sys

    path = _ledger(tmp_path, _varied)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "ledger", "export", "--format", fmt],
                          env={**os.environ, "LEDGER_DB": str(path)}, capture_output=True, timeout=120)
    stderr = proc.stderr.decode("utf-8", errors="replace")
    assert proc.returncode == 0, stderr[-2000:]
    assert proc.stdout == (DATA / f"flat_export_varied.{fmt}").read_bytes()
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in stderr.splitlines()
                if line.startswith("import time:")}
    assert "sqlite3" in imported  # imports were seen
    assert imported & {"pandas", "numpy"} == set()


@pytest.mark.parametrize("fmt", ["csv", "json", "md"])
def test_the_export_command_streams_to_stdout_or_a_file_the_same_bytes(tmp_path, fmt):
    from conftest import SEED, cli

    db = tmp_path / "cli.db"
    assert cli("import", SEED, "--db", db).exit_code == 0
    out = tmp_path / f"out.{fmt}"
    printed = cli("export", "--format", fmt, "--db", db)
    assert printed.exit_code == 0 and cli("export", "--format", fmt, "--db", db, "-o", out).exit_code == 0
    assert out.read_bytes() == printed.stdout_bytes
    assert not (tmp_path / f"out.{fmt}.tmp").exists()


def test_an_export_that_fails_leaves_no_file(tmp_path, monkeypatch):
    from conftest import SEED, cli
    import ledger.store.export as export

    db = tmp_path / "cli.db"
    assert cli("import", SEED, "--db", db).exit_code == 0

    def broken(source, fmt, out):
        out.write("name,date\n")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "write_flat", broken)
    result = cli("export", "--format", "csv", "--db", db, "-o", tmp_path / "runs.csv")
    assert result.exit_code == 1 and "No space left on device" in result.stderr
    assert list(tmp_path.glob("runs.csv*")) == []
