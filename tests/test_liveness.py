"""A running row whose trainer is gone is noticed: shown `stale`, turned `interrupted` by the
next write or `check --fix`, and taken over by `--resume`; a live one is left alone."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from conftest import cli
from ledger.store.db import open_ledger, transaction
from ledger.store.liveness import stale_reason, this_host
from ledger.store.models import Run
from ledger.store.sql_reader import get_run

ledger = cli
RUN = "backbone_b5ns_label_smoothong_normalization"


def gone_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def add_running(engine, name: str, *, pid: int, beat_age_s: float = 0.0, host: str | None = None) -> None:
    with transaction(engine) as session:
        parent = get_run(session, RUN)
        position = session.scalar(select(func.max(Run.position))) + 1
        session.add(Run(name=name, position=position, kind="reproduction", parent=parent, status="running",
                        links=[], args_status="none", host=host or this_host(), pid=pid,
                        heartbeat_at=datetime.now(timezone.utc) - timedelta(seconds=beat_age_s)))


def listed(name: str) -> dict:
    result = ledger("list", "--json")
    assert result.exit_code == 0, result.output
    return next(r for r in json.loads(result.stdout) if r["name"] == name)


def test_a_gone_process_or_an_old_heartbeat_is_stale_and_a_live_one_is_not(seeded_db):
    engine = open_ledger(str(seeded_db))
    add_running(engine, "alive", pid=os.getpid())
    add_running(engine, "killed", pid=gone_pid())
    add_running(engine, "silent", pid=os.getpid(), host="another-host", beat_age_s=3600)
    add_running(engine, "elsewhere", pid=1, host="another-host", beat_age_s=1)
    engine.dispose()
    assert listed("alive")["status"] == "running"
    assert listed("elsewhere")["status"] == "running"  # another host's pid says nothing here
    assert listed("killed")["status"] == "stale" and listed("silent")["status"] == "stale"
    shown = json.loads(ledger("show", "killed", "--json").stdout)
    assert shown["status"] == "stale" and "is gone" in shown["stale_reason"]
    assert "no heartbeat" in json.loads(ledger("show", "silent", "--json").stdout)["stale_reason"]
    assert "stale" in ledger("list").stdout

    report = json.loads(ledger("check", "--json").stdout)
    stale = sorted(f["run"] for f in report["findings"] if f["code"] == "stale-run")
    assert stale == ["killed", "silent"]
    # Reading changed nothing: the rows are still `running` in the database.
    with sqlite3.connect(seeded_db) as conn:
        assert conn.execute("SELECT status FROM runs WHERE name = 'killed'").fetchone() == ("running",)


def test_check_fix_marks_stale_rows_interrupted(seeded_db):
    engine = open_ledger(str(seeded_db))
    add_running(engine, "killed", pid=gone_pid())
    add_running(engine, "alive", pid=os.getpid())
    engine.dispose()
    report = json.loads(ledger("check", "--fix", "--json").stdout)
    assert report["fixed"] == ["killed"]
    assert [f["code"] for f in report["findings"] if f["run"] == "killed"] == ["stale-run-fixed"]
    shown = json.loads(ledger("show", "killed", "--json").stdout)
    assert shown["status"] == "interrupted" and "stale" in shown["error"] and "--resume" in shown["error"]
    assert listed("alive")["status"] == "running"
    assert json.loads(ledger("check", "--fix", "--json").stdout)["fixed"] == []  # nothing left to fix


def test_the_next_write_command_marks_stale_rows_interrupted(seeded_db):
    engine = open_ledger(str(seeded_db))
    add_running(engine, "killed", pid=gone_pid())
    engine.dispose()
    assert ledger("set", RUN, "--note", "checked").exit_code == 0
    assert json.loads(ledger("show", "killed", "--json").stdout)["status"] == "interrupted"


def test_heartbeat_renews_a_running_row(seeded_db):
    from ledger.runs import Heartbeat

    engine = open_ledger(str(seeded_db))
    add_running(engine, "beating", pid=os.getpid(), beat_age_s=3600)
    with transaction(engine) as session:
        run_id = get_run(session, "beating").id
    assert listed("beating")["status"] == "stale"
    with Heartbeat(engine, run_id, every=0.05):
        time.sleep(0.5)
    with transaction(engine, write=False) as session:
        run = get_run(session, "beating")
        assert stale_reason(run) is None and run.status == "running"
    engine.dispose()
    assert listed("beating")["status"] == "running"


@pytest.mark.slow
def test_a_trainer_killed_with_sigkill_is_stale_and_resume_takes_it_over(seeded_db, tmp_path):
    pytest.importorskip("torch")
    from reproduce.demo import make_demo_dataset

    data = make_demo_dataset(tmp_path / "tiny", n_train=8, n_val=4, n_test=2, size=64)
    args = ["--set", "image_size=64", "--set", "num_epochs=3", "--set", "batch_size=2", "--set", "val_batch_size=2",
            "--set", "num_workers=0", "--no-pretrained", "--wandb", "disabled"]
    proc = subprocess.Popen([sys.executable, "-m", "ledger", "reproduce", RUN, "--data", str(data), *args,
                             "--name", "killed"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while True:  # until its first epoch is in the ledger: it is in epoch 2
            assert proc.poll() is None, proc.stderr.read().decode(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "the trainer never finished an epoch"
            with sqlite3.connect(seeded_db, timeout=10) as conn:
                row = conn.execute("SELECT r.status, r.pid, count(m.id) FROM runs r LEFT JOIN metrics m"
                                   " ON m.run_id = r.id AND m.name = 'val_miou' WHERE r.name = 'killed'").fetchone()
            if row[0] == "running" and row[2] >= 1:
                break
            time.sleep(0.5)
        assert row[1] == proc.pid
        assert listed("killed")["status"] == "running"
        live = ledger("reproduce", "killed", "--resume")
        assert live.exit_code == 1 and "still running" in live.stderr
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert listed("killed")["status"] == "stale"
    report = json.loads(ledger("check", "--json").stdout)
    assert [f["code"] for f in report["findings"] if f["run"] == "killed"] == ["stale-run"]

    resumed = ledger("reproduce", "killed", "--resume", "--wandb", "disabled")
    assert resumed.exit_code == 0, resumed.output
    shown = json.loads(ledger("show", "killed", "--json").stdout)
    assert shown["status"] == "finished" and shown["stale_reason"] is None
    assert [p["step"] for p in shown["metrics"]["val_miou"]] == [1, 2, 3]
    # Both attempts are recorded and the duration is their total, the killed one included.
    attempts = shown["attempts"]
    assert [(a["n"], a["outcome"], a["pid"]) for a in attempts] == [(1, "lost", proc.pid), (2, "finished", attempts[1]["pid"])]
    assert attempts[0]["from_epoch"] == 1 and attempts[1]["from_epoch"] == 2
    assert attempts[0]["duration_s"] > 0 and attempts[1]["duration_s"] > 0
    assert shown["duration_s"] == pytest.approx(attempts[0]["duration_s"] + attempts[1]["duration_s"], abs=0.01)
    assert "over 2 attempts" in ledger("show", "killed").stdout


def test_a_queued_job_whose_worker_died_is_requeued_until_its_attempt_limit(seeded_db):
    from ledger.store.liveness import reap_stale

    engine = open_ledger(str(seeded_db))
    add_running(engine, "requeue_me", pid=gone_pid())
    add_running(engine, "give_up", pid=gone_pid())
    with transaction(engine) as session:
        for name, tries in (("requeue_me", 1), ("give_up", 3)):
            run = get_run(session, name)
            run.queue = {"max_attempts": 3}
            run.attempts = [{"n": n, "outcome": "lost", "started_at": None, "duration_s": 1.0}
                            for n in range(1, tries)] + [
                {"n": tries, "outcome": "running", "started_at": datetime.now(timezone.utc).isoformat(),
                 "duration_s": 0.0}]
    with transaction(engine) as session:
        assert sorted(reap_stale(session)) == ["give_up", "requeue_me"]
    with transaction(engine, write=False) as session:
        requeued, failed = get_run(session, "requeue_me"), get_run(session, "give_up")
        assert requeued.status == "queued" and "requeued after attempt 1" in requeued.error
        assert failed.status == "failed" and failed.error.startswith("gave up after 3 attempts")
        assert [a["outcome"] for a in failed.attempts] == ["lost", "lost", "lost"]
