"""The stdlib sqlite3 read path gives exactly what the SQLAlchemy path gives: the same runs
for every filter, sort and limit, the same `show`, the same errors; and the flat export is
byte for byte what it was before it was made fast."""

from __future__ import annotations

import difflib
import json
import os
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text

from conftest import SEED, SEED_V2
from ledger.core.errors import LedgerError
from ledger.store.db import HEAD_REVISION, make_engine, open_ledger, transaction, upgrade
from ledger.store.export import FLAT_COLUMNS, export_flat, flat_records
from ledger.core.filters import COLUMN_NAMES, NUMERIC, SUGGESTION_POOL, TIMES, closest_names
from ledger.store.readers import reading
from ledger.store.shapes import run_details, run_summary
from ledger.store.sqlite_reader import DECODERS, Schema, SqliteReader, connect, sqlite_time
from ledger.store.importer import import_file
from ledger.store.models import Metric, Run
from ledger.store.sql_reader import SessionReader, get_run

PARENT = "backbone_b5ns_label_smoothong_normalization"

# (--where ..., --sort, --limit): every column kind, every operator, the type rules, aliases.
QUERIES = [
    ([], None, None),
    ([], None, 3),
    ([], None, 0),
    (["lr=0.0001"], None, None),
    (["lr>=0.0001", "lr<0.0003"], "-lb_miou", None),
    (["args.batch_size<8"], None, None),
    (["cutmix=True"], None, None),
    (["cutmix=False"], None, 4),
    (["cutmix!=False"], "name", None),
    (["criterion~focal"], None, None),
    (["criterion~_"], None, None),  # `_` is data, not a LIKE wildcard
    (["run_name=\"DeepLabV3_cosinelr_tmax_10\""], None, None),
    (["run_name='x' OR '1'='1'"], None, None),
    (["model=Ensemble"], None, None),
    (["name~backbone_ns"], "-name", 2),
    (["name~%"], None, None),
    (["lb_miou>0.6"], None, None),
    (["lb>=0.6", "score<0.62"], None, None),
    (["lb_miou~0.6"], None, None),
    (["created_at~2026-01-02 03"], None, None),
    (["position~1"], "-position", None),
    (["status=None"], None, 2),
    (["status!=None"], None, None),
    (["kind=reproduction"], "-val_miou", None),
    (["val>0.5"], None, None),
    (["created_at>2000-01-01"], "created_at", 5),
    (["created_at<=2026-01-02 03:04:05"], None, None),
    (["created_at>=2026-01-02T03:04:05"], None, None),
    (["created_at>0999-12-31"], None, 2),
    (["position>=3", "position<8"], "-position", None),
    (["seed=42", "weight_decay=1e-06"], "num_epochs", None),
    (["tags~b"], None, None),
    (["flag=True"], None, None),
    ([], "-lb_miou", 4),
    ([], "lb", None),
    ([], "-num_epochs", 3),
    ([], "args.lr", None),
    (["Lr=0.0001"], None, None),  # keys match case-insensitively where that is unambiguous
    (["NAME~backbone"], "-LB_MIOU", None),
    ([], "+val_miou", None),
]
BAD_QUERIES = [
    (["lr"], None, None),
    (["lb_miou>high"], None, None),
    (["lb_miou=True"], None, None),
    (["cutmix>True"], None, None),
    (["seed=None"], None, None),
    (["status>None"], None, None),
    (["created_at>yesterday"], None, None),
    (["lr=" + "9" * 400], None, None),
    ([], "bad key!", None),
    ([], None, -1),
    (["lr"], "bad key!", -1),  # the limit is checked first, then filters, then the sort
    (["lr"], "bad key!", None),
    ([], "-no_such_argument", 2),
    (["foo=1"], None, None),
    (["batch_size=abc"], None, None),
    (["cutmix=0.5"], None, None),
]


@pytest.fixture
def ledger_path(tmp_path) -> Path:
    """The seed log, a reproduction with metrics and two children, and runs with odd arguments."""
    path = tmp_path / "ledger.db"
    engine = open_ledger(str(path), create=True)
    with transaction(engine) as session:
        import_file(session, SEED)
        parent = get_run(session, PARENT)
        repro = Run(
            name=f"{PARENT}_repro1", position=11, kind="reproduction", parent=parent, status="finished",
            args=dict(parent.args), args_raw=parent.args_raw, args_status="ok", links=["https://wandb.ai/x/y/runs/1"],
            notes="reproduction, [bold]literal[/bold]", val_miou=0.5123, lb_val_miou=0.5, job={"seed": 42, "lr": 1e-4},
            job_hash="ab" * 32, environment={"torch": "2.14.1"}, data_fingerprint={"train": "0" * 8},
            duration_s=12.5, checkpoint_path="/tmp/best.pt", cells={"Run Name": "x", "GPU": "V100"},
            created_at=datetime(2026, 1, 2, 3, 4, 5), updated_at=datetime(2026, 1, 2, 3, 4, 5, 600),
        )
        repro.metrics = [Metric(name="val_miou", step=s, epoch=s, value=v) for s, v in enumerate((0.4, 0.41, 0.42))]
        repro.metrics.append(Metric(name="lr", step=0, epoch=None, value=1e-4))
        session.add(repro)
        session.flush()
        for i, status in ((2, "failed"), (3, None)):
            session.add(Run(name=f"{repro.name}_child{i}", position=11 + i, kind="reproduction", parent=repro,
                            status=status, links=[], args_status="none", val_miou=None))
        session.add(Run(name="odd_types", position=20, args_status="ok", links=[],
                        args={"cutmix": "True", "lr": "0.0001", "tags": ["a", "b"], "flag": True, "seed": None,
                              "criterion": "a_b"}))
    engine.dispose()
    return path


def _json(data):
    return json.loads(json.dumps(data, ensure_ascii=False, default=str))


def _both(path: Path, call):
    """`call(reader)` on the sqlite3 reader and on the SQLAlchemy reader: (result or error text) each."""
    out = []
    conn = connect(str(path))
    assert conn is not None, "the fast path did not take an up-to-date SQLite ledger"
    try:
        out.append(_outcome(lambda: call(SqliteReader(conn))))
    finally:
        conn.close()
    engine = open_ledger(str(path))
    with transaction(engine) as session:
        out.append(_outcome(lambda: call(SessionReader(session))))
    engine.dispose()
    return out


def _outcome(thunk):
    try:
        return _json(thunk())
    except LedgerError as exc:
        return f"LedgerError: {exc}"


@pytest.mark.parametrize("where,sort,limit", QUERIES)
def test_list_matches_the_sqlalchemy_path(ledger_path, where, sort, limit):
    fast, slow = _both(ledger_path, lambda r: [run_summary(run) for run in r.list_runs(where=where, sort=sort, limit=limit)])
    assert not isinstance(fast, str), fast
    assert fast == slow


@pytest.mark.parametrize("where,sort,limit", [q for q in QUERIES if q[2] is None])
def test_runs_read_a_batch_at_a_time_are_the_runs_listed(ledger_path, where, sort, limit):
    """`iter_runs` (what `list --json` streams) gives `list_runs`' runs, across batch
    boundaries, on both read paths."""
    def batched(reader):
        listed = [run_summary(run) for run in reader.list_runs(where=where, sort=sort)]
        batches = [[run_summary(run) for run in batch] for batch in reader.iter_runs(where=where, sort=sort, batch=3)]
        assert all(0 < len(batch) <= 3 for batch in batches)
        assert [run for batch in batches for run in batch] == listed
        return batches

    fast, slow = _both(ledger_path, batched)
    assert not isinstance(fast, str), fast
    assert fast == slow


def test_list_json_prints_what_it_printed_before_it_streamed(ledger_path, capsys):
    from ledger.cli import fast
    from ledger.store.shapes import run_listing

    for where, sort in ((["lr=0.0001"], None), ([], "-lb_miou"), ([], None)):
        fast.list_runs(where=where, sort=sort, limit=None, search=None, as_json=True, db=str(ledger_path))
        streamed = capsys.readouterr().out
        with reading(str(ledger_path)) as reader:
            whole = json.dumps(run_listing(reader, reader.list_runs(where=where, sort=sort)),
                               ensure_ascii=False, indent=2, default=str) + "\n"
        assert streamed == whole and json.loads(streamed)


def test_the_queries_find_something(ledger_path):
    # Parity on empty answers proves little: most queries above must match some runs.
    counts = [len(_both(ledger_path, lambda r, q=q: r.list_runs(where=q[0], sort=q[1], limit=q[2]))[0])
              for q in QUERIES]
    assert sum(1 for c in counts if c) >= len(QUERIES) - 5
    odd = _both(ledger_path, lambda r: [x.name for x in r.list_runs(where=["cutmix=True"])])[0]
    assert odd == ["DeepLabV3_cosinelr_tmax_10_backbone_ns_cutmix"]  # the text "True" is not True


@pytest.mark.parametrize("where,sort,limit", BAD_QUERIES)
def test_errors_match_the_sqlalchemy_path(ledger_path, where, sort, limit):
    fast, slow = _both(ledger_path, lambda r: r.list_runs(where=where, sort=sort, limit=limit))
    assert isinstance(fast, str) and fast.startswith("LedgerError: ")
    assert fast == slow


@pytest.mark.parametrize("name", [
    PARENT, f"{PARENT}_repro1", f"{PARENT}_repro1_child2", "Ensemble", "DeepLabV3_cosinelr", "odd_types",
    "multiple_aug_with_multi_loss",
])
def test_show_matches_the_sqlalchemy_path(ledger_path, name):
    fast, slow = _both(ledger_path, lambda r: run_details(r.get_run(name)))
    assert fast == slow
    if name.endswith("_repro1"):
        assert fast["parent"] == PARENT and fast["children"] == [f"{name}_child2", f"{name}_child3"]
        assert [p["value"] for p in fast["metrics"]["val_miou"]] == [0.4, 0.41, 0.42]
        assert fast["extra_columns"] == {"GPU": "V100"} and fast["job"] == {"seed": 42, "lr": 1e-4}
        assert fast["created_at"] == "2026-01-02T03:04:05" and fast["updated_at"] == "2026-01-02T03:04:05.000600"


@pytest.mark.parametrize("name", ["DeepLabV3_cosinlr", "ensemble", "backbone", "zzz", ""])
def test_unknown_run_errors_match(ledger_path, name):
    fast, slow = _both(ledger_path, lambda r: r.get_run(name))
    assert fast == slow and fast.startswith(f"LedgerError: no run named {name!r}")
    if name == "DeepLabV3_cosinlr":
        assert "did you mean DeepLabV3_cosinelr" in fast


def unfiltered_suggestions(name: str, names: list[str]) -> list[str]:
    """The suggestions as they were: difflib over every name, else names containing it."""
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    return close or [n for n in names if name.lower() in n.lower()][:3]


def test_suggestions_on_many_names_match_a_search_of_every_name():
    models = ("DeepLabV3", "UnetPlusPlus", "FPN", "PSPNet")
    names = [f"{models[i % 4]}_b{i % 7}_{'focal' if i % 3 else 'dice'}_{i:05d}" for i in range(20 * SUGGESTION_POOL)]
    # Queries with one clear answer; on vague ones ("PSPNet_b_dice_0") the pre-filter may pick
    # other names among the many equally close.
    typos = ["FPN_b2_focal_0100", "UnetPlusPlus_b3_dise_00213", "deeplabv3_b0_focal_00840", "PSPNet_b3_dice_0003",
             "b6_FOCAL", "_00012", "nothing like it"]
    for typo in typos:
        assert closest_names(typo, names) == unfiltered_suggestions(typo, names), typo
    assert closest_names("UnetPlusPlus_b3_dise_00213", names)[0] == "UnetPlusPlus_b3_dice_00213"
    assert closest_names("nothing like it", names) == []


def _kind(sa_type) -> str:
    """What a SQLAlchemy column type comes back as, in the terms of the sqlite3 reader's decoders."""
    from sqlalchemy import JSON, Boolean, DateTime

    for kind, cls in (("JSON", JSON), ("DATETIME", DateTime), ("BOOLEAN", Boolean)):
        if isinstance(sa_type, cls):
            return kind
    return "as stored"


def test_the_sqlite_reader_decodes_every_column_as_the_model_types_it(ledger_path):
    with sqlite3.connect(ledger_path) as conn:
        schema = Schema.of(conn, "runs")
    table = Run.__table__
    assert list(schema.columns) == list(table.columns.keys())
    decoded_as = {c: next((k for k, f in DECODERS.items() if f is schema.decoder(c)), "as stored")
                  for c in schema.columns}
    assert decoded_as == {c.name: _kind(c.type) for c in table.columns}
    assert {c for c, k in decoded_as.items() if k == "JSON"} >= {"args", "links", "cells", "job"}


def test_a_column_added_to_the_file_comes_back_decoded_by_its_type(ledger_path):
    # What a new JSON or time column in a migration looks like to the reader: no list to update.
    with sqlite3.connect(ledger_path) as conn:
        conn.execute("ALTER TABLE runs ADD COLUMN extra_json JSON")
        conn.execute("ALTER TABLE runs ADD COLUMN extra_time DATETIME")
        conn.execute("UPDATE runs SET extra_json = ?, extra_time = ? WHERE name = ?",
                     ('{"a": [1, 2]}', "2026-01-02 03:04:05.000000", PARENT))
    conn = connect(str(ledger_path))
    try:
        run = SqliteReader(conn).get_run(PARENT)
    finally:
        conn.close()
    assert run.extra_json == {"a": [1, 2]} and run.extra_time == datetime(2026, 1, 2, 3, 4, 5)


@pytest.mark.parametrize("value", [datetime(2026, 1, 2, 3, 4, 5), datetime(999, 12, 31, 23, 59, 59, 999999),
                                   datetime(2026, 11, 28, 0, 0, 0, 600)])
def test_times_are_compared_in_the_format_sqlalchemy_stores(value):
    from sqlalchemy.dialects import sqlite

    assert sqlite_time(value) == sqlite.DATETIME().bind_processor(sqlite.dialect())(value)


def test_filter_types_follow_the_model():
    from sqlalchemy import DateTime, Float, Integer

    table = Run.__table__
    assert set(COLUMN_NAMES) <= set(table.columns.keys())
    assert NUMERIC == {c for c in COLUMN_NAMES if isinstance(table.columns[c].type, (Float, Integer))}
    assert TIMES == {c for c in COLUMN_NAMES if isinstance(table.columns[c].type, DateTime)}


def _set_revision(path: Path, revision: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))


def test_only_an_up_to_date_sqlite_ledger_takes_the_fast_path(ledger_path, tmp_path, monkeypatch):
    assert connect(str(ledger_path)) is not None
    monkeypatch.chdir(ledger_path.parent)
    assert connect(f"sqlite:///{ledger_path.name}") is not None  # relative to the working folder
    assert connect(str(tmp_path / "missing.db")) is None
    assert connect("postgresql://nobody@127.0.0.1:1/none") is None
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    assert connect(str(garbage)) is None
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    assert connect(str(other)) is None
    _set_revision(ledger_path, "0001_future_or_past")
    assert connect(str(ledger_path)) is None
    _set_revision(ledger_path, HEAD_REVISION)


def test_reading_falls_back_to_sqlalchemy_and_its_errors(ledger_path, tmp_path):
    with reading(str(ledger_path)) as reader:
        assert isinstance(reader, SqliteReader)
    with pytest.raises(LedgerError, match="no ledger at"):
        with reading(str(tmp_path / "missing.db")):
            pass
    assert not (tmp_path / "missing.db").exists()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    with pytest.raises(LedgerError, match="cannot open the ledger"):
        with reading(str(garbage)):
            pass


def test_an_old_ledger_is_read_unchanged_until_a_write_upgrades_it(tmp_path):
    old = tmp_path / "old.db"
    engine = make_engine(f"sqlite:///{old}")
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO runs (position, name, args_status, links, kind, created_at, updated_at)"
                          " VALUES (1, 'kept', 'none', '[]', 'logged', '2021-01-01 00:00:00.000000',"
                          " '2021-01-01 00:00:00.000000')"))
    engine.dispose()
    assert connect(str(old)) is None
    before = old.read_bytes()
    for _ in range(2):  # read through an upgraded copy in memory; the file stays as it was
        with reading(str(old)) as reader:
            assert isinstance(reader, SessionReader)
            assert [r.name for r in reader.list_runs()] == ["kept"]
    assert old.read_bytes() == before
    open_ledger(str(old)).dispose()  # what a write command does first: upgrade in place
    with reading(str(old)) as reader:
        assert isinstance(reader, SqliteReader)
        assert [r.name for r in reader.list_runs()] == ["kept"]


def _imports(args: list[str], db: Path) -> set[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "ledger", *args],
                          env={**os.environ, "LEDGER_DB": str(db)}, capture_output=True, timeout=120)
    stderr = proc.stderr.decode("utf-8", errors="replace")
    modules = {line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}
    assert "ledger.cli" in modules, stderr[-2000:]
    return {name.split(".")[0] for name in modules}


@pytest.mark.parametrize("args", [
    ["list", "--limit", "3"],
    ["list", "--json", "--where", "lr=0.0001", "--sort", "-lb_miou"],
    ["list", "--where", "lr"],
    ["show", PARENT],
    ["show", "DeepLabV3_cosinlr"],
    ["--help"],
    ["export", "--format", "csv"],
], ids=" ".join)
def test_read_commands_do_not_import_sqlalchemy(ledger_path, args):
    assert "sqlalchemy" not in _imports(args, ledger_path)


# -- the flat export ----------------------------------------------------------------------

def reference_flat(session, fmt: str) -> str:
    """The flat export as it was written before it was made fast: a dict per run, then pandas."""
    import pandas as pd
    from sqlalchemy.orm import aliased

    parent = aliased(Run)
    query = (
        select(Run.name, Run.date, Run.model, Run.kind, parent.name, Run.status, Run.lb_miou, Run.val_miou,
               Run.lb_val_miou, Run.links, Run.notes, Run.args_raw, Run.args_status, Run.job_hash,
               Run.created_at, Run.updated_at, Run.section, Run.args, Run.scores)
        .outerjoin(parent, Run.parent_id == parent.id)
        .order_by(Run.position, Run.id)
    )
    records = []
    for row in session.execute(query):
        record = dict(zip(FLAT_COLUMNS, row[:-2]))
        record["links"] = " ".join(record["links"] or [])
        for key in ("created_at", "updated_at"):
            record[key] = record[key].isoformat() if record[key] is not None else None
        for column, values in (("args", row[-2]), ("scores", row[-1])):
            for key, value in (values or {}).items():
                record[f"{column}.{key}"] = json.dumps(value) if isinstance(value, (list, dict)) else value
        records.append(record)
    flattened = [sorted({k for r in records for k in r if k.startswith(f"{c}.")}) for c in ("args", "scores")]
    frame = pd.DataFrame.from_records(records, columns=list(FLAT_COLUMNS) + flattened[0] + flattened[1])
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n")
    return frame.to_json(orient="records", force_ascii=False, indent=2) + "\n"


ODD_ARGS = [
    {"x": 1, "y": "plain", "z": True, "cr": "carriage\rreturn"},
    {"x": None, "y": 'has "quotes", commas', "w": 2.5},
    {"x": 3, "y": "line\nbreak\r\nand \r", "z": False, "w": 1e-05},
    {"list": [1, "two"], "dict": {"k": [None]}, "mixed": "text, with comma"},
    {"mixed": 7, "only": None, "big": 10**20, "unicode": "한글 ünï"},
    {"empty": ""},
]


def _add_odd_runs(session, args_list, start: int = 100) -> None:
    for i, args in enumerate(args_list):
        links = ["https://x/한글"] if i == 3 else ["a b", "c,d"] if i % 2 else []  # 한글 is escaped in JSON
        session.add(Run(name=f"odd_{i}", position=start + i, args_status="ok", links=links, args=args,
                        notes=None if i % 2 else "note, with \"quote\"", date="", lb_miou=None,
                        val_miou=0.5 if i == 1 else None, created_at=datetime(2026, 1, 2, 3, 4, 5)))
    session.flush()
    # A time written by another program, not in SQLAlchemy's own format.
    session.execute(text("UPDATE runs SET updated_at = '2026-01-02T03:04:05+00:00' WHERE name = 'odd_0'"))


def _ledger(tmp_path, fill) -> Path:
    path = tmp_path / f"export{len(list(tmp_path.iterdir()))}.db"
    engine = open_ledger(str(path), create=True)
    with transaction(engine) as session:
        fill(session)
    engine.dispose()
    return path


def _v2_with_reproduction(session) -> None:
    import_file(session, SEED)
    import_file(session, SEED_V2)
    parent = get_run(session, PARENT)
    session.add(Run(name="repro_1", position=99, kind="reproduction", parent=parent, links=[], args=dict(parent.args),
                    args_status="ok", status="finished", val_miou=0.5, job_hash="f" * 64,
                    created_at=datetime(2026, 1, 2, 3, 4, 5), updated_at=datetime(2026, 1, 2, 3, 4, 5, 1)))


@pytest.mark.parametrize("fill", [
    _v2_with_reproduction,
    lambda session: (_v2_with_reproduction(session), _add_odd_runs(session, ODD_ARGS)),
    lambda session: _add_odd_runs(session, [{"only": 1}, {}]),  # one numeric column with a gap
    lambda session: _add_odd_runs(session, [{"mixed": 1}, {"mixed": "a\nb"}]),  # pandas writes it all
    lambda session: _add_odd_runs(session, [{}]),
    lambda session: None,  # an empty ledger
], ids=["v2+repro", "v2+repro+odd", "gap", "mixed-linebreak", "no-args", "empty"])
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_flat_export_is_byte_identical_to_the_reference(tmp_path, fill, fmt):
    path = _ledger(tmp_path, fill)
    engine = open_ledger(str(path))
    with transaction(engine) as session:
        expected = reference_flat(session, fmt)
        assert export_flat(session, fmt) == expected
    engine.dispose()
    with reading(str(path)) as reader:
        assert isinstance(reader, SqliteReader)
        assert export_flat(reader.source, fmt) == expected


def test_flat_records_read_the_same_from_both_paths(ledger_path):
    conn = connect(str(ledger_path))
    fast = flat_records(conn)
    conn.close()
    engine = open_ledger(str(ledger_path))
    with transaction(engine) as session:
        slow = flat_records(session)
    engine.dispose()
    assert fast == slow and fast[-1]["args.tags"] == '["a", "b"]' and "args.tags" not in fast[0]
