"""The command recipe: any script recorded as a row with its commit, change, environment,
arguments and metrics; reproduced at that commit in a fresh worktree; rows of other code
families refused with the way out, and `attach` giving them a command."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import cli, git, new_repo, shown as show, step_series as series

ledger = cli

# A training script in the shape users bring: argparse, a constant from another module
# of the repository, metrics through ledger.log. A second or less.
TRAIN = '''
import argparse, sys, time
import ledger
from settings import TARGET

p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.1)
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--fail", action="store_true")
p.add_argument("--sleep", type=float, default=0.0)
a = p.parse_args()
w = 0.0
for step in range(1, a.epochs + 1):
    w -= a.lr * 2 * (w - TARGET)
    ledger.log(step=step, loss=(w - TARGET) ** 2, val_miou=1 / (1 + (w - TARGET) ** 2))
    print(f"step {step} w {w:.6f}", flush=True)
    time.sleep(a.sleep)
if a.fail:
    print("boom", file=sys.stderr)
    sys.exit(3)
'''


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    root = new_repo(tmp_path / "project")
    (root / "train.py").write_text(TRAIN)
    (root / "settings.py").write_text("TARGET = 1.0\n")
    (root / ".gitignore").write_text("checkpoints/\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    monkeypatch.chdir(root)
    return root


def test_a_command_is_recorded_with_its_commit_arguments_environment_and_metrics(seeded_db, repo):
    result = ledger("run", "--name", "lr_sweep_1", "--env", "HOME", "--", sys.executable, "train.py", "--lr", "0.25",
                    "--epochs=3")
    assert result.exit_code == 0, result.output
    row = show("lr_sweep_1")
    command = row["command"] if "command" in row else None
    assert row["status"] == "finished" and row["kind"] == "logged"
    assert command["argv"] == [sys.executable, "train.py", "--lr", "0.25", "--epochs=3"] and command["cwd"] == "."
    assert command["git"]["commit"] == git(repo, "rev-parse", "HEAD") and command["git"]["dirty"] is False
    assert command["git"]["branch"] == "main" and command["exit_code"] == 0
    assert row["arguments"] == {"lr": 0.25, "epochs": 3}
    assert row["environment"]["python"] == sys.version.split()[0]
    assert "sqlalchemy" in row["environment"]["distributions"]
    assert row["environment"]["env"] == {"HOME": os.environ["HOME"]}
    assert [s for s, _ in series(row)["loss"]] == [1, 2, 3]
    assert row["val_miou"] == pytest.approx(max(v for _, v in series(row)["val_miou"]))
    assert "step 3" in Path(command["run_dir"], "output.log").read_text()
    assert "lr_sweep_1: finished (exit code 0)" in result.stderr
    # Its arguments are the row's: filters see them.
    listed = json.loads(ledger("list", "--where", "lr=0.25", "--json").stdout)
    assert [r["name"] for r in listed] == ["lr_sweep_1"]


def test_reproduce_runs_the_old_commit_in_a_fresh_worktree_and_agrees(seeded_db, repo):
    assert ledger("run", "--name", "old", "--", sys.executable, "train.py", "--lr", "0.2").exit_code == 0
    (repo / "settings.py").write_text("TARGET = 5.0\n")
    git(repo, "commit", "-qam", "a new target")
    assert ledger("run", "--name", "new", "--", sys.executable, "train.py", "--lr", "0.2").exit_code == 0
    assert series(show("new")) != series(show("old")), "the script's change must show in its metrics"

    again = ledger("reproduce", "old")
    assert again.exit_code == 0, again.output
    repro = show("old_repro1")
    assert repro["kind"] == "reproduction" and repro["parent"] == "old"
    assert series(repro) == series(show("old")), "the old commit gives the old metrics exactly"
    assert "agrees with old: identical metrics, every step" in again.stderr
    assert not Path(repro["command"]["run_dir"], "worktree").exists(), "the worktree is removed after the run"
    assert len(git(repo, "worktree", "list").splitlines()) == 1, "git keeps no record of the removed worktree"
    assert (repo / "settings.py").read_text() == "TARGET = 5.0\n", "the user's tree is untouched"

    changed = ledger("reproduce", "old", "--set", "lr=0.3", "--name", "old_lr3", "--keep-worktree")
    assert changed.exit_code == 0, changed.output
    row = show("old_lr3")
    assert row["command"]["argv"][-2:] == ["--lr", "0.3"] and row["command"]["overrides"] == {"lr": "0.3"}
    assert row["arguments"]["lr"] == 0.3
    assert "differs from old" in changed.stderr
    assert Path(row["command"]["run_dir"], "worktree", "train.py").is_file()

    # compare (and check, which uses the same verdict) say whether each agrees.
    same = json.loads(ledger("compare", "old", "old_repro1", "--json").stdout)
    [verdict] = same["agreements"]
    assert verdict["agrees"] is True and verdict["same_job"] is True
    assert {m["metric"] for m in verdict["metrics"]} == {"loss", "val_miou"}
    other = json.loads(ledger("compare", "old", "old_lr3", "--json").stdout)
    assert other["agreements"][0]["agrees"] is False and other["agreements"][0]["differing_fields"] == ["command"]
    assert [r["key"] for r in other["command"]] == ["command"]
    assert other["agreements"][0]["overridden"] == ["lr"]


def test_a_dirty_tree_is_recorded_and_reapplied(seeded_db, repo):
    (repo / "settings.py").write_text("from extra import T\nTARGET = T\n")  # an uncommitted change...
    (repo / "extra.py").write_text("T = 3.0\n")  # ...and an untracked file it needs
    (repo / "checkpoints").mkdir()
    (repo / "checkpoints" / "big.bin").write_bytes(b"\0" * 1000)  # ignored: not recorded
    assert ledger("run", "--name", "dirty", "--", sys.executable, "train.py").exit_code == 0
    row = show("dirty")
    assert row["command"]["git"]["dirty"] is True
    assert set(row["command"]["git"]["untracked"]) == {"extra.py"}
    shown = ledger("show", "dirty").stdout
    assert "settings.py, extra.py (untracked)" in shown and "uncommitted change" in shown
    git(repo, "checkout", "--", "settings.py")
    (repo / "extra.py").unlink()
    again = ledger("reproduce", "dirty")
    assert again.exit_code == 0, again.output
    assert series(show("dirty_repro1")) == series(row)


def test_a_change_too_big_to_store_is_refused_before_any_row(seeded_db, repo, monkeypatch):
    monkeypatch.setattr("reproduce.command.MAX_CHANGE_BYTES", 100)
    monkeypatch.setattr("reproduce.command.git_state.__defaults__", (100,))
    (repo / "notes.txt").write_text("x" * 500)
    before = len(json.loads(ledger("list", "--json").stdout))
    result = ledger("run", "--", sys.executable, "train.py")
    assert result.exit_code == 1 and "uncommitted change" in result.stderr and ".gitignore" in result.stderr
    assert len(json.loads(ledger("list", "--json").stdout)) == before


def test_a_failing_script_leaves_a_failed_row_with_its_exit_code(seeded_db, repo):
    result = ledger("run", "--name", "crash", "--", sys.executable, "train.py", "--fail")
    assert result.exit_code == 1 and "exit code 3" in result.stderr
    row = show("crash")
    assert row["status"] == "failed" and row["command"]["exit_code"] == 3 and "exit code 3" in row["error"]
    assert len(row["metrics"]["loss"]) == 3, "what it reported before failing is kept"
    assert "boom" in Path(row["command"]["run_dir"], "output.log").read_text()
    missing = ledger("run", "--name", "nothing", "--", "no-such-program-xyz")
    assert missing.exit_code == 1 and "cannot start 'no-such-program-xyz'" in missing.stderr
    assert show("nothing")["status"] == "failed"


def test_sigint_interrupts_the_command_and_the_row_says_so(seeded_db, repo):
    env = {**os.environ, "LEDGER_DB": str(seeded_db)}
    proc = subprocess.Popen([sys.executable, "-m", "ledger", "run", "--name", "stopped", "--", sys.executable,
                             "train.py", "--epochs", "100", "--sleep", "0.2"], cwd=repo, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode(errors="replace")
            assert time.monotonic() < deadline, "the command never started"
            with sqlite3.connect(seeded_db, timeout=10) as conn:
                row = conn.execute("SELECT status FROM runs WHERE name = 'stopped'").fetchone()
            log = next(Path(os.environ["LEDGER_RUNS_DIR"]).glob("stopped/output.log"), None)
            if row and row[0] == "running" and log and "step 2" in log.read_text():
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    row = show("stopped")
    assert row["status"] == "interrupted" and row["attempts"][0]["outcome"] == "interrupted"
    assert 2 <= len(row["metrics"]["loss"]) < 100


def test_a_row_of_another_code_family_is_refused_and_attach_makes_it_reproducible(seeded_db, repo, tmp_path):
    log = tmp_path / "teammate.md"
    log.write_text("| Date | Run Name | Model | Arguments | Notes |\n| --- | --- | --- | --- | --- |\n"
                   "| 2024-03-01 | unet_try | Unet | lr=0.5, <br>epochs=2 | ours |\n"
                   "| 2024-03-02 | free_form | Unet | loss function=CE<br>epoch : 10 | ours |\n")
    assert ledger("import", log).exit_code == 0
    refused = ledger("reproduce", "unet_try", "--dry-run")
    assert refused.exit_code == 1 and "Model column says 'Unet'" in refused.stderr
    assert "ledger attach unet_try" in refused.stderr
    free = ledger("reproduce", "free_form", "--dry-run")
    assert free.exit_code == 1 and "defaults" in free.stderr and "ledger attach free_form" in free.stderr

    attached = ledger("attach", "unet_try", "--command", f"{sys.executable} train.py {{args}}", "--repo", repo)
    assert attached.exit_code == 0, attached.output
    plan = ledger("reproduce", "unet_try", "--dry-run")
    assert plan.exit_code == 0 and "train.py --lr 0.5 --epochs 2" in plan.stdout
    ran = ledger("reproduce", "unet_try")
    assert ran.exit_code == 0, ran.output
    row = show("unet_try_repro1")
    assert row["arguments"] == {"lr": 0.5, "epochs": 2} and len(row["metrics"]["loss"]) == 2
    assert ledger("attach", "unet_try", "--command", "x").exit_code == 1, "a row has one command"
    bad = ledger("attach", "free_form", "--command", "python t.py", "--commit", "0" * 40, "--repo", repo)
    assert bad.exit_code == 1 and "is not in" in bad.stderr


def test_strict_env_refuses_a_different_environment(seeded_db, repo):
    assert ledger("run", "--name", "envy", "--", sys.executable, "train.py", "--epochs", "1").exit_code == 0
    from ledger.store.db import open_ledger, transaction
    from ledger.store.sql_reader import get_run

    engine = open_ledger(str(seeded_db))
    with transaction(engine) as session:
        run = get_run(session, "envy")
        run.environment = run.environment | {"python": "2.7.18"}
    refused = ledger("reproduce", "envy", "--strict-env")
    assert refused.exit_code == 1 and "python: 2.7.18 ->" in refused.stderr
    allowed = ledger("reproduce", "envy")
    assert allowed.exit_code == 0 and "environment differs: python: 2.7.18 ->" in allowed.stderr


def test_a_missing_commit_is_refused_before_any_row(seeded_db, repo, tmp_path):
    assert ledger("run", "--name", "gone", "--", sys.executable, "train.py", "--epochs", "1").exit_code == 0
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    before = len(json.loads(ledger("list", "--json").stdout))
    result = ledger("reproduce", "gone", "--repo", other)
    assert result.exit_code == 1 and "is not in" in result.stderr and "--repo" in result.stderr
    assert len(json.loads(ledger("list", "--json").stdout)) == before


WANDB_SCRIPT = '''
import wandb
run = wandb.init(config={"lr": 0.1}, settings=wandb.Settings(silent=True, console="off", x_disable_stats=True))
for step in range(1, 4):
    wandb.log({"loss": 1.0 / step, "acc": 0.2 * step}, step=step)
run.summary["best_acc"] = 0.9
wandb.finish()
'''


def test_metrics_come_from_the_wandb_run_the_script_wrote(seeded_db, repo, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")  # never the network
    (repo / "wb.py").write_text(WANDB_SCRIPT)
    git(repo, "add", "wb.py")
    git(repo, "commit", "-qm", "a W&B script")
    result = ledger("run", "--name", "wb", "--", sys.executable, "wb.py")
    assert result.exit_code == 0, result.output
    row = show("wb")
    assert series(row)["loss"] == [(1, 1.0), (2, 0.5), (3, pytest.approx(1 / 3))]
    assert series(row)["best_acc"] == [(3, 0.9)], "a summary value without history is the final value"
    wandb_run = row["command"]["wandb"]
    assert wandb_run["offline"] is True and wandb_run["run_id"] == row["command"]["wandb_run_id"]
    assert row["links"] == [wandb_run["folder"]] and Path(wandb_run["folder"]).is_dir()
    exported = ledger("export", "--include-failed").stdout
    line = next(line for line in exported.splitlines() if "| wb " in line)
    assert "W&B offline run" in line and wandb_run["folder"] not in line


def test_a_change_that_no_longer_applies_is_refused_before_any_row(seeded_db, repo):
    (repo / "settings.py").write_text("TARGET = 2.0\n")
    assert ledger("run", "--name", "patched", "--", sys.executable, "train.py", "--epochs", "1").exit_code == 0
    from ledger.store.db import open_ledger, transaction
    from ledger.store.sql_reader import get_run

    engine = open_ledger(str(seeded_db))
    with transaction(engine) as session:  # as if the stored change had been damaged
        run = get_run(session, "patched")
        git_state = dict(run.command["git"])
        git_state["diff"] = git_state["diff"].replace("-TARGET = 1.0", "-TARGET = 9.9")
        run.command = run.command | {"git": git_state}
    before = len(json.loads(ledger("list", "--json").stdout))
    result = ledger("reproduce", "patched")
    assert result.exit_code == 1 and "the recorded change does not apply" in result.stderr
    assert len(json.loads(ledger("list", "--json").stdout)) == before
    assert len(git(repo, "worktree", "list").splitlines()) == 1, "no worktree is left behind"
