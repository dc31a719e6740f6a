"""The ledger as a queue: workers drain it with each job run exactly once, a killed worker's
job is taken over and finished, a built-in job resumes on another worker to the same
metrics, and bad input queues or claims nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import cli, git, new_repo, shown

ledger = cli
RUN = "backbone_b5ns_label_smoothong_normalization"

# A job as short as a job can be: it notes its start, sleeps, reports a metric.
JOB = '''
import os, sys, time
import ledger
with open(os.environ["STARTS_FILE"], "a") as f:
    f.write(os.environ["LEDGER_RUN_NAME"] + "\\n")
time.sleep(float(sys.argv[sys.argv.index("--sleep") + 1]))
ledger.log(step=1, score=1.0)
'''


@pytest.fixture
def job_repo(tmp_path, monkeypatch) -> Path:
    root = new_repo(tmp_path / "jobs")
    (root / "job.py").write_text(JOB)
    git(root, "add", "job.py")
    git(root, "commit", "-qm", "job")
    monkeypatch.chdir(root)
    monkeypatch.setenv("STARTS_FILE", str(tmp_path / "starts.txt"))
    return root


def queue_jobs(n: int, seconds: float, db: str) -> list[str]:
    """A command row, then `n` queued reproductions of it."""
    assert ledger("run", "--db", db, "--name", "base", "--", sys.executable, "job.py", "--sleep", "0").exit_code == 0
    names = []
    for i in range(n):
        result = ledger("queue", "add", "base", "--db", db, "--name", f"job{i:02d}", "--set", f"sleep={seconds}")
        assert result.exit_code == 0, result.output
        names.append(f"job{i:02d}")
    return names


def worker(db: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ledger", "worker", "--db", db, "--quiet", "--poll", "0.1", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)


def starts(tmp_path: Path) -> list[str]:
    path = tmp_path / "starts.txt"
    return path.read_text().split() if path.exists() else []


def rows(db: str) -> dict:
    return {r["name"]: r for r in json.loads(ledger("list", "--db", db, "--json").stdout)}


def show(db: str, name: str) -> dict:
    return shown(name, "--db", db)


@pytest.mark.slow
@pytest.mark.postgres
def test_four_workers_drain_24_jobs_each_exactly_once(db_url, job_repo, tmp_path):
    names = queue_jobs(24, 0.05, db_url)
    procs = [worker(db_url, "--until-empty", "--name", f"w{i}") for i in range(4)]
    for proc in procs:
        assert proc.wait(timeout=240) == 0, proc.stderr.read().decode(errors="replace")[-2000:]
    ran = starts(tmp_path)
    state = rows(db_url)
    errors = {n: show(db_url, n)["error"] for n in names if state[n]["status"] != "finished"}
    assert sorted(ran) == sorted(["base"] + names), f"every job ran once, none twice; not finished: {errors}"
    assert all(state[n]["status"] == "finished" for n in names)
    details = [show(db_url, n) for n in names]
    assert all(len(d["attempts"]) == 1 for d in details), "no row was claimed twice"
    workers = {d["attempts"][0]["worker"] for d in details}
    assert workers <= {"w0", "w1", "w2", "w3"} and len(workers) >= 2, "the work was shared"
    assert json.loads(ledger("queue", "--db", db_url, "--json").stdout)["workers"] == [], "workers leave the table"


@pytest.mark.slow
@pytest.mark.postgres
def test_a_worker_killed_mid_job_is_taken_over_and_its_job_finished(db_url, job_repo, tmp_path, monkeypatch):
    db = db_url
    monkeypatch.setenv("LEDGER_STALE_AFTER", "30")
    queue_jobs(2, 3.0, db)
    victim = worker(db, "--name", "victim")
    try:
        deadline = time.monotonic() + 60
        while "job00" not in starts(tmp_path):  # it is inside the first job
            assert victim.poll() is None, victim.stderr.read().decode(errors="replace")
            assert time.monotonic() < deadline, "the worker never started a job"
            time.sleep(0.1)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
    time.sleep(0.5)
    assert rows(db)["job00"]["status"] == "stale"
    rescuer = worker(db, "--until-empty", "--name", "rescuer")
    assert rescuer.wait(timeout=120) == 0, rescuer.stderr.read().decode(errors="replace")[-2000:]
    assert starts(tmp_path).count("job00") == 2 and starts(tmp_path).count("job01") == 1
    job = show(db, "job00")
    assert job["status"] == "finished"
    assert [(a["worker"], a["outcome"]) for a in job["attempts"]] == [("victim", "lost"), ("rescuer", "finished")]
    assert rows(db)["job01"]["status"] == "finished"


@pytest.mark.slow
def test_a_built_in_job_resumes_on_another_worker_to_the_same_metrics(seeded_db, tmp_path):
    db = str(seeded_db)
    three = ["--data", "demo:tiny", "--set", "num_epochs=3", "--wandb", "disabled"]
    reference = ledger("reproduce", RUN, *three, "--name", "straight")
    assert reference.exit_code == 0, reference.output
    assert ledger("queue", "add", RUN, *three, "--name", "queued").exit_code == 0
    victim = worker(db, "--name", "victim")
    try:
        deadline = time.monotonic() + 300
        while True:
            assert victim.poll() is None, victim.stderr.read().decode(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "the job never finished an epoch"
            epochs = show(db, "queued")["metrics"].get("val_miou", [])
            if len(epochs) >= 1:
                break
            time.sleep(0.2)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
    rescuer = worker(db, "--until-empty", "--name", "rescuer")
    assert rescuer.wait(timeout=300) == 0, rescuer.stderr.read().decode(errors="replace")[-2000:]
    resumed, straight = show(db, "queued"), show(db, "straight")
    assert resumed["status"] == "finished" and len(resumed["attempts"]) == 2
    assert resumed["attempts"][1]["from_epoch"] >= 2, "it resumed from a checkpoint, not from scratch"

    def values(d):
        return {k: [p["value"] for p in v] for k, v in d["metrics"].items()}

    assert values(resumed) == values(straight), "a resumed CPU run ends exactly as an uninterrupted one"


def test_a_sweep_queues_the_product_named_predictably(seeded_db):
    result = ledger("queue", "add", RUN, "--data", "demo:tiny", "--fork", "--name", "grid", "--sweep", "lr=1e-4,2e-4",
                    "--sweep", "batch_size=2,4", "--json")
    assert result.exit_code == 0, result.output
    names = json.loads(result.stdout)["queued"]
    assert names == ["grid_lr1e-4_batch_size2", "grid_lr1e-4_batch_size4", "grid_lr2e-4_batch_size2",
                     "grid_lr2e-4_batch_size4"]
    row = show(str(seeded_db), "grid_lr2e-4_batch_size4")
    assert row["status"] == "queued" and row["job"]["job"]["lr"] == 2e-4 and row["job"]["job"]["batch_size"] == 4
    assert row["queue"]["sweep"] == {"lr": "2e-4", "batch_size": "4"} and row["queue"]["group"] == names[0]
    status = json.loads(ledger("queue", "--json").stdout)
    assert [r["name"] for r in status["runs"]] == names
    repeats = json.loads(ledger("queue", "add", RUN, "--data", "demo:tiny", "--repeats", "3", "--json").stdout)
    assert repeats["queued"] == [f"{RUN}_repro1", f"{RUN}_repro2", f"{RUN}_repro3"]
    assert [show(str(seeded_db), n)["job"]["job"]["seed"] for n in repeats["queued"]] == [42, 43, 44]

    cancelled = ledger("queue", "cancel", names[0], "--json")
    assert json.loads(cancelled.stdout) == [{"run": names[0], "was": "queued", "now": "cancelled"}]
    assert show(str(seeded_db), names[0])["status"] == "interrupted"
    again = ledger("queue", "cancel", names[0])
    assert again.exit_code == 1 and "nothing to cancel" in again.stderr


def test_bad_input_queues_and_claims_nothing(seeded_db):
    before = rows(str(seeded_db))
    for args, message in (
        (["queue", "add", "no_such_run", "--data", "demo:tiny"], "no run named 'no_such_run'"),
        (["queue", "add", RUN, "--data", "demo:tiny", "--sweep", "lrr=1,2"], "lrr"),
        (["queue", "add", RUN, "--data", "demo:tiny", "--sweep", "lr=-1,1e-4"], "lr must be a finite number"),
        (["queue", "add", RUN], "--data"),
        (["worker", "--gpu", "99", "--until-empty"], "--gpu 99: there is no such GPU here"),
        (["worker", "--until-empty", "--db", "postgresql+psycopg://nobody@127.0.0.1:1/none"], "error"),
    ):
        result = ledger(*args)
        assert result.exit_code == 1 and message in result.stderr, (args, result.output)
        assert "Traceback" not in result.output
    assert rows(str(seeded_db)) == before


def test_two_workers_cannot_share_a_name(seeded_db):
    db = str(seeded_db)
    first = worker(db, "--name", "gpu0")
    try:
        deadline = time.monotonic() + 60
        while not json.loads(ledger("queue", "--json").stdout)["workers"]:
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        second = ledger("worker", "--name", "gpu0", "--until-empty")
        assert second.exit_code == 1 and "a worker named 'gpu0' is already running" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)


@pytest.mark.slow
def test_cancel_stops_a_running_job_through_its_row(seeded_db, job_repo, tmp_path):
    db = str(seeded_db)
    queue_jobs(2, 30.0, db)
    first = worker(db, "--until-empty", "--name", "w")
    try:
        deadline = time.monotonic() + 60
        while "job00" not in starts(tmp_path):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        assert ledger("queue", "cancel", "job01", "job00").exit_code == 0  # one queued, one running
        assert first.wait(timeout=60) == 0, first.stderr.read().decode(errors="replace")[-2000:]
    finally:
        if first.poll() is None:
            first.kill()
    job = show(db, "job00")
    assert job["status"] == "interrupted" and "cancelled while running" in job["error"]
    assert show(db, "job01")["status"] == "interrupted" and "job01" not in starts(tmp_path)


def test_a_queued_command_row_gets_the_data_folder(seeded_db, job_repo, tmp_path):
    db = str(seeded_db)
    (job_repo / "job.py").write_text(JOB + 'open(os.environ["STARTS_FILE"] + ".data", "w").write(os.environ.get("LEDGER_DATA", ""))\n')
    git(job_repo, "commit", "-qam", "reads its data")
    assert ledger("run", "--name", "base", "--", sys.executable, "job.py", "--sleep", "0").exit_code == 0
    data = tmp_path / "trash"
    data.mkdir()
    assert ledger("queue", "add", "base", "--data", str(data), "--name", "on_data").exit_code == 0
    result = ledger("worker", "--until-empty", "--quiet", "--poll", "0.1")
    assert result.exit_code == 0, result.output
    assert show(db, "on_data")["status"] == "finished"
    assert (tmp_path / "starts.txt.data").read_text() == str(data)


def test_a_job_queued_on_other_data_is_left_for_another_worker(seeded_db, tmp_path):
    from reproduce.demo import make_demo_dataset

    ours = make_demo_dataset(tmp_path / "ours", n_train=4, n_val=2, n_test=1, size=64)
    theirs = make_demo_dataset(tmp_path / "theirs", n_train=4, n_val=2, n_test=1, size=64, seed=1)
    queued = ledger("queue", "add", RUN, "--data", str(ours), "--set", "image_size=64", "--no-pretrained",
                    "--name", "on_ours")
    assert queued.exit_code == 0, queued.output
    other = ledger("worker", "--data", str(theirs), "--until-empty", "--quiet", "--poll", "0.1")
    assert other.exit_code == 0, other.output
    assert "is not the data on_ours was queued with" in other.stderr and "left for another worker" in other.stderr
    assert show(str(seeded_db), "on_ours")["status"] == "queued"
    nowhere = ledger("worker", "--until-empty", "--quiet", "--poll", "0.1")
    assert "this worker has no --data folder" in nowhere.stderr
    assert show(str(seeded_db), "on_ours")["status"] == "queued"


def test_max_jobs_stops_a_worker_after_that_many(seeded_db, job_repo, tmp_path):
    db = str(seeded_db)
    queue_jobs(3, 0.0, db)
    result = ledger("worker", "--max-jobs", "2", "--quiet", "--poll", "0.1", "--json")
    assert result.exit_code == 0, result.output
    assert [j["name"] for j in json.loads(result.stdout)["jobs"]] == ["job00", "job01"]
    assert rows(db)["job02"]["status"] == "queued"
