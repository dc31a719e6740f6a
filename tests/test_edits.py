"""Fixing a row: set with replace and clear, rename, rm and tags; each shows in the export."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from conftest import SEED, cli
from ledger.core.errors import LedgerError
from ledger.store.db import transaction
from ledger.store.edits import remove_run, rename_run, set_run, tag_run
from ledger.store.export import export_markdown
from ledger.store.models import Metric, Run
from ledger.store.sql_reader import get_run, list_runs

ledger = cli
CUTMIX = "DeepLabV3_cosinelr_tmax_10_backbone_ns_added_aug"  # its notes state "lb mIoU : ..."
BASE = "DeepLabV3_cosinelr"


def export(engine) -> str:
    with transaction(engine, write=False) as session:
        return export_markdown(session)


def row_of(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if f"| {name} " in line)


def add_reproduction(session, parent: str, name: str) -> Run:
    original = get_run(session, parent)
    position = session.scalar(select(func.max(Run.position))) + 1
    run = Run(name=name, position=position, kind="reproduction", parent=original, status="finished", links=[],
              args_status="none", val_miou=0.5)
    run.metrics = [Metric(name="val_miou", step=1, epoch=1, value=0.5)]
    session.add(run)
    session.flush()
    return run


def test_lb_replaces_the_score_in_the_notes_and_clear_removes_it(seeded_engine):
    with transaction(seeded_engine) as session:
        before = get_run(session, CUTMIX).notes
        assert "lb mIoU" in before
        set_run(session, CUTMIX, lb=0.7)
    with transaction(seeded_engine) as session:
        again = set_run(session, CUTMIX, lb=0.71)
    assert again.lb_miou == 0.71 and again.notes.count("lb mIoU") == 1 and "0.71" in again.notes
    assert "0.7 " not in again.notes + " "
    row = row_of(export(seeded_engine), CUTMIX)
    assert row.count("lb mIoU") == 1 and "0.71" in row
    with transaction(seeded_engine) as session:
        cleared = set_run(session, CUTMIX, clear_lb=True)
    assert cleared.lb_miou is None and "lb mIoU" not in (cleared.notes or "")
    assert "lb mIoU" not in row_of(export(seeded_engine), CUTMIX)


def test_note_appends_once_notes_replace_and_clear_empties(seeded_engine):
    with transaction(seeded_engine) as session:
        first = set_run(session, BASE, note="resubmitted")
        second = set_run(session, BASE, note="resubmitted")
    assert first.changed == ["notes"] and second.changed == [] and second.notes.count("resubmitted") == 1
    with transaction(seeded_engine) as session:
        assert set_run(session, BASE, notes="only this").notes == "only this"
    assert "only this" in row_of(export(seeded_engine), BASE)
    with transaction(seeded_engine) as session:
        assert set_run(session, BASE, clear_notes=True).notes is None
        with pytest.raises(LedgerError, match="contradict"):
            set_run(session, BASE, lb=0.5, clear_lb=True)
        with pytest.raises(LedgerError, match="pass one of"):
            set_run(session, BASE, note="a", notes="b")


def test_rename_keeps_links_reproductions_and_place(seeded_engine):
    with transaction(seeded_engine) as session:
        add_reproduction(session, BASE, "base_repro")
        old = get_run(session, BASE)
        links, position = list(old.links), old.position
        rename_run(session, BASE, "baseline")
    with transaction(seeded_engine, write=False) as session:
        run = get_run(session, "baseline")
        assert run.links == links and run.position == position
        assert [c.name for c in run.children] == ["base_repro"]
        with pytest.raises(LedgerError, match="no run named 'DeepLabV3_cosinelr'"):
            get_run(session, BASE)
    text = export(seeded_engine)
    assert "| baseline " in text and f"| {BASE} " not in text
    with transaction(seeded_engine) as session:
        assert rename_run(session, "baseline", "baseline").changed is False


@pytest.mark.parametrize("new, message", [
    ("a/b", "path separators"), ("a\nb", "control characters"), ("", "cannot be empty"),
    (" padded", "spaces"), ("x" * 256, "at most 255"), ("multiple_aug_with_multi_loss", "already exists"),
])
def test_rename_checks_the_new_name(seeded_engine, new, message):
    with pytest.raises(LedgerError, match=message), transaction(seeded_engine) as session:
        rename_run(session, BASE, new)
    assert export(seeded_engine).encode("utf-8") == SEED.read_bytes()


def test_rm_refuses_while_reproductions_point_at_the_run(seeded_engine):
    with transaction(seeded_engine) as session:
        add_reproduction(session, BASE, "base_repro")
    with pytest.raises(LedgerError, match="1 reproduction"), transaction(seeded_engine) as session:
        remove_run(session, BASE)
    with transaction(seeded_engine) as session:
        result = remove_run(session, BASE, with_reproductions=True)
    assert result.removed == [BASE, "base_repro"]
    with transaction(seeded_engine, write=False) as session:
        assert session.scalar(select(func.count()).select_from(Metric)) == 0
        assert BASE not in [r.name for r in list_runs(session)]
    assert f"| {BASE} " not in export(seeded_engine)


def test_tags_are_added_once_removed_and_filtered_on(seeded_engine):
    with transaction(seeded_engine) as session:
        assert tag_run(session, BASE, ["best-lb", "baseline"]).changed
        assert not tag_run(session, BASE, ["best-lb"]).changed
        tag_run(session, CUTMIX, ["best-lb"])
        tag_run(session, CUTMIX, ["best-lb"], remove=True)
        assert not tag_run(session, CUTMIX, ["best-lb"], remove=True).changed
        with pytest.raises(LedgerError, match="one word"):
            tag_run(session, BASE, ["two words"])
    with transaction(seeded_engine, write=False) as session:
        assert [r.name for r in list_runs(session, where=["tag=best-lb"])] == [BASE]
        assert [r.name for r in list_runs(session, where=["tag~base"])] == [BASE]
        assert BASE not in [r.name for r in list_runs(session, where=["tag!=best-lb"])]
        assert len(list_runs(session, where=["tag!=best-lb"])) == 9
        assert [t.tag for t in get_run(session, BASE).tags] == ["baseline", "best-lb"]


def test_edits_through_the_command_line(seeded_db):
    assert ledger("tag", BASE, "best-lb").exit_code == 0
    fast = json.loads(ledger("list", "--json", "--where", "tag=best-lb").stdout)  # the stdlib sqlite3 path
    assert [r["name"] for r in fast] == [BASE]
    assert json.loads(ledger("show", BASE, "--json").stdout)["tags"] == ["best-lb"]
    assert ledger("untag", BASE, "best-lb").exit_code == 0
    assert json.loads(ledger("list", "--json", "--where", "tag=best-lb").stdout) == []
    renamed = ledger("rename", BASE, "baseline", "--json")
    assert renamed.exit_code == 0 and json.loads(renamed.stdout)["run"] == "baseline"
    bad = ledger("rename", "baseline", "../escape")
    assert bad.exit_code == 1 and bad.stderr.startswith("error: the new name cannot contain '/'")
    assert ledger("rm", "baseline").exit_code == 0
    assert "baseline" not in ledger("export").stdout
    missing = ledger("rm", "baseline")
    assert missing.exit_code == 1 and "no run named 'baseline'" in missing.stderr
