"""Runs from W&B and MLflow: every run in, merged by the tracker's run id, re-import
idempotent, an upstream change reported, bad input refused with the ledger unchanged,
and a W&B run that recorded its program reproducible by the command recipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli, git, new_repo, shown as show, step_series as series

ledger = cli

SCRIPT = '''
import argparse, wandb
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.1)
a = p.parse_args()
run = wandb.init(name="seg-b5", notes="first try", tags=["baseline"], config={"lr": a.lr, "epochs": 3},
                 settings=wandb.Settings(silent=True, console="off", x_disable_stats=True))
for step in range(1, 4):
    wandb.log({"train_loss": a.lr / step, "val_miou": 0.1 * step}, step=step)
run.summary["lb_score"] = 0.61
wandb.finish()
'''


def rows() -> dict:
    return {r["name"]: r for r in json.loads(ledger("list", "--json").stdout)}


@pytest.fixture
def wandb_project(tmp_path, monkeypatch) -> Path:
    """A git repository whose script logged one offline W&B run under ./wandb."""
    pytest.importorskip("wandb")
    root = new_repo(tmp_path / "proj")
    (root / "train.py").write_text(SCRIPT)
    git(root, "add", "train.py")
    git(root, "commit", "-qm", "x")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(root), "WANDB_RUN_ID": "run0001a"}
    subprocess.run([sys.executable, "train.py", "--lr", "0.2"], cwd=root, env=env, check=True, capture_output=True)
    monkeypatch.chdir(root)
    return root


def test_a_wandb_folder_imports_each_run_and_is_reproducible_by_its_command(seeded_db, wandb_project):
    result = ledger("import", wandb_project / "wandb", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["added"] == ["seg-b5"] and report["tracker"] == "wandb"
    row = show("seg-b5")
    assert row["tracker_id"] == "wandb:run0001a" and row["arguments"] == {"lr": 0.2, "epochs": 3}
    assert row["notes"] == "first try" and row["tags"] == ["baseline"]
    assert series(row)["val_miou"] == [(1, 0.1), (2, 0.2), (3, pytest.approx(0.3))]
    assert series(row)["lb_score"] == [(3, 0.61)], "a summary value without history is the final value"
    assert row["extra_columns"]["W&B run"] == "run0001a" and row["links"] == []
    assert row["command"]["argv"][1:] == ["train.py", "--lr", "0.2"]
    again = json.loads(ledger("import", wandb_project / "wandb", "--json").stdout)
    assert again["unchanged"] == ["seg-b5"] and not again["added"] and not again["changed"]

    reproduced = ledger("reproduce", "seg-b5")
    assert reproduced.exit_code == 0, reproduced.output
    assert series(show("seg-b5_repro1"))["val_miou"] == series(row)["val_miou"]
    assert "agrees with seg-b5: identical metrics, every step" in reproduced.stderr


def test_bad_wandb_input_fails_in_one_line_with_the_ledger_unchanged(seeded_db, tmp_path):
    before = rows()
    empty = tmp_path / "empty"
    empty.mkdir()
    none = ledger("import", empty)
    assert none.exit_code == 1 and "holds no W&B run folder" in none.stderr
    broken = tmp_path / "wandb" / "offline-run-20261201_101010-bad1"
    broken.mkdir(parents=True)
    (broken / "run-bad1.wandb").write_bytes(b"\x00garbage")
    corrupt = ledger("import", tmp_path / "wandb")
    assert corrupt.exit_code == 1 and "not a W&B transaction log" in corrupt.stderr
    assert "Traceback" not in corrupt.output and rows() == before


def test_the_wandb_runs_csv_maps_config_to_arguments_and_summary_to_metrics(seeded_db, tmp_path):
    table = tmp_path / "wandb_export.csv"
    header = "Name,State,Notes,Tags,Created,Runtime,ID,lr,optimizer,batch_size,val_miou,summary.lb_score\n"
    table.write_text(header + 'a1,finished,,"x,y",2024-03-01T10:00:00.000Z,120,2tymft8i,0.001,adam,8,0.41,0.6\n'
                     "a2,crashed,oops,,2024-03-02T10:00:00.000Z,12,3rfj384y,0.01,sgd,16,0.2,\n")
    first = json.loads(ledger("import", table, "--from", "wandb", "--json").stdout)
    assert first["added"] == ["a1", "a2"]
    a1 = show("a1")
    assert a1["arguments"] == {"lr": 0.001, "optimizer": "adam", "batch_size": 8} and a1["date"] == "2024-03-01"
    assert series(a1) == {"val_miou": [(0, 0.41)], "lb_score": [(0, 0.6)]} and a1["tags"] == ["x", "y"]
    assert a1["tracker_id"] == "wandb:2tymft8i" and a1["val_miou"] == 0.41
    assert json.loads(ledger("import", table, "--from", "wandb", "--json").stdout)["unchanged"] == ["a1", "a2"]
    table.write_text(table.read_text().replace(",0.41,0.6", ",0.41,0.65"))  # a new summary value upstream
    changed = json.loads(ledger("import", table, "--from", "wandb", "--json").stdout)
    assert changed["changed"] == ["a1"] and series(show("a1"))["lb_score"] == [(0, 0.65)]
    assert [r["name"] for r in json.loads(ledger("list", "--where", "optimizer=sgd", "--json").stdout)] == ["a2"]


def make_mlflow_store(path: Path) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{path}")
    seg = client.create_experiment("seg")
    other = client.create_experiment("other")
    parent = client.create_run(seg, run_name="sweep", tags={"mlflow.note.content": "the sweep",
                                                            "mlflow.source.git.commit": "1a2b3c",
                                                            "mlflow.source.name": "train.py"})
    child = client.create_run(seg, run_name="sweep-lr1", tags={"mlflow.parentRunId": parent.info.run_id})
    for key, value in (("lr", "0.001"), ("amp", "True"), ("optimizer", "adamw")):
        client.log_param(child.info.run_id, key, value)
    for step in range(3):
        client.log_metric(child.info.run_id, "val_miou", 0.2 + 0.1 * step, step=step)
    gone = client.create_run(seg, run_name="mistake")
    client.delete_run(gone.info.run_id)
    client.create_run(other, run_name="elsewhere")
    return {"client": client, "child": child.info.run_id}


def test_an_mlflow_store_imports_through_its_client(seeded_db, tmp_path):
    pytest.importorskip("mlflow")
    store = make_mlflow_store(tmp_path / "mlflow.db")
    source = f"mlflow:sqlite:///{tmp_path / 'mlflow.db'}"
    only = json.loads(ledger("import", source, "--experiment", "seg", "--json").stdout)
    assert sorted(only["added"]) == ["sweep", "sweep-lr1"] and only["skipped"] == [
        {"run": "mistake", "why": "deleted in MLflow"}]
    child = show("sweep-lr1")
    assert child["arguments"] == {"amp": True, "lr": 0.001, "optimizer": "adamw"}, "params are typed"
    assert series(child)["val_miou"] == [(0, 0.2), (1, pytest.approx(0.3)), (2, pytest.approx(0.4))]
    assert child["parent"] == "sweep" and child["tracker_id"] == f"mlflow:{store['child']}"
    sweep = show("sweep")
    assert sweep["notes"] == "the sweep" and sweep["extra_columns"]["Commit"] == "1a2b3c"

    everything = json.loads(ledger("import", source, "--json").stdout)
    assert everything["added"] == ["elsewhere"] and sorted(everything["unchanged"]) == ["sweep", "sweep-lr1"]
    store["client"].log_metric(store["child"], "val_miou", 0.55, step=3)
    changed = json.loads(ledger("import", source, "--json").stdout)
    assert changed["changed"] == ["sweep-lr1"] and series(show("sweep-lr1"))["val_miou"][-1] == (3, 0.55)

    missing = ledger("import", source, "--experiment", "nope")
    assert missing.exit_code == 1 and "no experiment 'nope'" in missing.stderr and "seg" in missing.stderr


def test_a_store_that_is_not_mlflow_is_refused(seeded_db, tmp_path, monkeypatch):
    before = rows()
    not_a_store = tmp_path / "other.db"
    import sqlite3

    with sqlite3.connect(not_a_store) as conn:
        conn.execute("CREATE TABLE t (x)")
    pytest.importorskip("mlflow")
    refused = ledger("import", f"mlflow:sqlite:///{not_a_store}")
    assert refused.exit_code == 1 and "is not an MLflow tracking store" in refused.stderr
    gone = ledger("import", f"mlflow:sqlite:///{tmp_path / 'nope.db'}")
    assert gone.exit_code == 1 and "no such file" in gone.stderr
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the extra were not installed
    monkeypatch.setitem(sys.modules, "mlflow.entities", None)
    absent = ledger("import", f"mlflow:sqlite:///{not_a_store}")
    assert absent.exit_code == 1 and "pip install 'ledger[mlflow]'" in absent.stderr
    assert rows() == before


def test_an_mlflow_file_store_is_read_too(seeded_db, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    run = client.create_run(client.create_experiment("seg"), run_name="fs1")
    client.log_param(run.info.run_id, "lr", "0.01")
    client.log_metric(run.info.run_id, "val_miou", 0.5, step=1)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")  # ledger allows it itself: it only reads
    monkeypatch.chdir(tmp_path)
    result = ledger("import", "mlflow:./mlruns", "--experiment", "seg", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == ["fs1"] and show("fs1")["arguments"] == {"lr": 0.01}
    missing = ledger("import", "mlflow:./nowhere")
    assert missing.exit_code == 1 and "no such folder" in missing.stderr
