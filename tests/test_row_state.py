"""A row's status is the truth: options are checked before a row is appended, whatever fails
after it leaves it `failed`, and the Markdown log holds results, not failures."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import func, select

from conftest import cli
from ledger.store.db import open_ledger, transaction
from ledger.store.models import Run

ledger = cli
RUN = "backbone_b5ns_label_smoothong_normalization"


def add_row(seeded_db, name: str, status: str) -> None:
    engine = open_ledger(str(seeded_db))
    with transaction(engine) as session:
        position = session.scalar(select(func.max(Run.position))) + 1
        session.add(Run(name=name, position=position, kind="reproduction", status=status, links=[],
                        args_status="none", notes=f"{status} run", error="RuntimeError: boom" if status == "failed" else None))
    engine.dispose()


def count_runs() -> int:
    return len(json.loads(ledger("list", "--json").stdout))


def test_failed_and_interrupted_runs_stay_out_of_the_markdown_log(seeded_db):
    add_row(seeded_db, "it_failed", "failed")
    add_row(seeded_db, "it_stopped", "interrupted")
    add_row(seeded_db, "it_finished", "finished")
    log = ledger("export").stdout
    assert "it_finished" in log and "it_failed" not in log and "it_stopped" not in log
    everything = ledger("export", "--include-failed").stdout
    assert all(name in everything for name in ("it_failed", "it_stopped", "it_finished"))
    rows = {r["name"]: r["status"] for r in csv.DictReader(io.StringIO(ledger("export", "--format", "csv").stdout))}
    assert rows["it_failed"] == "failed" and rows["it_stopped"] == "interrupted"


@pytest.mark.parametrize("args,message", [
    (["--wandb", "sometimes"], "--wandb: unknown W&B mode 'sometimes'"),
    (["--wandb", "sometimes", "--dry-run"], "--wandb: unknown W&B mode 'sometimes'"),
    (["--set", "lr=nan", "--dry-run"], "lr must be a finite number more than 0, not nan"),
    (["--set", "lr=-1"], "lr must be a finite number more than 0, not -1.0"),
    (["--name", "../outside"], "--name cannot contain '/'"),
    (["--name", "multiple_aug_with_multi_loss"], "a run named 'multiple_aug_with_multi_loss' already exists"),
])
def test_a_bad_option_appends_nothing(seeded_db, tmp_path, args, message):
    before = count_runs()
    result = ledger("reproduce", RUN, "--data", tmp_path, *args)
    assert result.exit_code == 1 and message in result.stderr and "Traceback" not in result.output
    assert count_runs() == before


def test_dry_run_checks_the_data_folder_as_a_run_would(seeded_db, tmp_path):
    from reproduce.demo import make_demo_dataset

    missing = ledger("reproduce", RUN, "--data", tmp_path / "nowhere", "--dry-run")
    assert missing.exit_code == 1 and "data folder" in missing.stderr and "does not exist" in missing.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    no_split = ledger("run", "--from", RUN, "--data", empty, "--dry-run")
    assert no_split.exit_code == 1 and "train.json is missing" in no_split.stderr
    data = make_demo_dataset(tmp_path / "tiny", n_train=2, n_val=1, n_test=1, size=64)
    wrong_size = ledger("reproduce", RUN, "--data", data, "--dry-run")
    assert wrong_size.exit_code == 1 and "expects 512x512 images" in wrong_size.stderr
    assert "--set image_size=N" in wrong_size.stderr
    assert ledger("reproduce", RUN, "--data", data, "--dry-run", "--set", "image_size=64").exit_code == 0
    assert ledger("reproduce", RUN, "--dry-run").exit_code == 0, "without --data there is nothing to check"


def test_an_unusable_runs_folder_appends_nothing(seeded_db, tmp_path):
    pytest.importorskip("torch")
    from reproduce.demo import make_demo_dataset

    data = make_demo_dataset(tmp_path / "tiny", n_train=2, n_val=1, n_test=1, size=64)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    before = count_runs()
    result = ledger("reproduce", RUN, "--data", data, "--runs-dir", blocker / "runs", "--no-pretrained",
                    "--set", "image_size=64")
    assert result.exit_code == 1 and "cannot create the runs folder" in result.stderr
    assert count_runs() == before


def test_show_calls_the_lowest_loss_and_the_highest_score_best(seeded_db):
    from ledger.store.models import Metric

    engine = open_ledger(str(seeded_db))
    with transaction(engine) as session:
        run = session.scalars(select(Run).where(Run.name == RUN)).one()
        run.metrics = [Metric(name=n, step=s, epoch=s, value=v) for n, values in
                       (("train_loss", (0.9, 0.5, 0.7)), ("val_miou", (0.40, 0.45, 0.42))) for s, v in enumerate(values, 1)]
    engine.dispose()
    lines = {cells[0]: cells for cells in ([c for c in line.replace("│", " ").split()]
                                           for line in ledger("show", RUN).stdout.splitlines())
             if cells and cells[0] in ("train_loss", "val_miou")}
    assert lines["train_loss"][-2:] == ["0.7000", "0.5000"]  # last, best
    assert lines["val_miou"][-2:] == ["0.4200", "0.4500"]
