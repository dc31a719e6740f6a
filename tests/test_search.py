"""`ledger list --search TEXT`: runs whose name, notes or raw arguments hold TEXT, in any case,
the same on the stdlib sqlite3 path (FTS5 trigram index), through SQLAlchemy, and on PostgreSQL
(ILIKE); and `list --json` carries each run's arguments, notes and links."""

from __future__ import annotations

import json

import pytest

from conftest import cli
from ledger.store.db import open_ledger, transaction
from ledger.store.edits import rename_run, set_run
from ledger.store.readers import reading
from ledger.store.sql_reader import SessionReader, list_runs
from ledger.store.sqlite_reader import SqliteReader

ledger = cli
TERMS = ["cutmix", "CutMix", "적용", "lb mIoU", "ns", "madgrad", "100%", "no such text anywhere", "_"]


def expected(session, term: str) -> list[str]:
    """The answer by hand: a case-insensitive substring of name, notes or raw arguments."""
    wanted = term.lower()
    return [r.name for r in list_runs(session)
            if any(wanted in (v or "").lower() for v in (r.name, r.notes, r.args_raw))]


@pytest.mark.parametrize("term", TERMS)
def test_search_finds_what_the_text_holds_on_every_database(seeded_engine, term):
    with transaction(seeded_engine, write=False) as session:
        assert [r.name for r in list_runs(session, search=term)] == expected(session, term)


def test_both_sqlite_paths_search_alike_and_follow_edits(seeded_db):
    engine = open_ledger(str(seeded_db))
    with transaction(engine) as session:
        set_run(session, "DeepLabV3_cosinelr", note="tried TTA here")
        rename_run(session, "Ensemble", "voting_blend")
    for term in [*TERMS, "tta", "voting", "ensemble"]:
        with reading(str(seeded_db)) as reader:
            assert isinstance(reader, SqliteReader)
            fast = [r.name for r in reader.list_runs(search=term)]
        with transaction(engine, write=False) as session:
            slow = [r.name for r in SessionReader(session).list_runs(search=term)]
            assert fast == slow == expected(session, term), term
    engine.dispose()
    assert [r["name"] for r in json.loads(ledger("list", "--search", "tta", "--json").stdout)] == ["DeepLabV3_cosinelr"]
    assert ledger("list", "--search", "  ").exit_code == 1


def test_list_json_carries_arguments_notes_and_links(seeded_db):
    runs = {r["name"]: r for r in json.loads(ledger("list", "--json").stdout)}
    cutmix = runs["DeepLabV3_cosinelr_tmax_10_backbone_ns_cutmix"]
    assert cutmix["arguments"]["cutmix"] is True and cutmix["links"][0].startswith("https://wandb.ai/")
    assert cutmix["notes"]


def test_list_json_carries_the_last_value_of_each_metric(seeded_db):
    from sqlalchemy import select

    from ledger.store.models import Metric, Run

    engine = open_ledger(str(seeded_db))
    with transaction(engine) as session:
        run = session.scalars(select(Run).where(Run.name == "DeepLabV3_cosinelr")).one()
        run.metrics = [Metric(name="val_miou", step=s, epoch=s, value=v) for s, v in ((2, 0.5), (1, 0.4), (3, 0.45))]
    engine.dispose()
    runs = {r["name"]: r for r in json.loads(ledger("list", "--json").stdout)}
    assert runs["DeepLabV3_cosinelr"]["metrics"] == {"val_miou": 0.45}
    assert runs["Ensemble"]["metrics"] == {}
    with reading(str(seeded_db)) as fast, transaction(open_ledger(str(seeded_db)), write=False) as session:
        ids = [r.id for r in fast.list_runs()]
        assert fast.last_metrics(ids) == SessionReader(session).last_metrics(ids) == {ids[0]: {"val_miou": 0.45}}
