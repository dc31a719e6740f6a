"""benchmarks/anchors.py at a tiny size: it builds its stores, asks every question, prints the table of
medians with answers that agree, and leaves out with a message an anchor it cannot import.

MLflow and trackio are optional benchmark dependencies: their tests skip where they are absent
(trackio is looked for as a `trackio` command on PATH, since it usually lives in a venv of its own).
Nothing reaches the network: the script turns telemetry off and the Hugging Face hub offline."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = REPO / "benchmarks" / "anchors.py"
TITLES = ("the 20 newest runs", "runs with lr=0.0001", "best 5 by lb_miou", "CSV export of every run")


def _anchors(tmp_path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--runs", "50", "--repeats", "1", "--keep", str(tmp_path / "stores"), *args],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _rows(out: str, tool: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("|") and f"| {tool} |" in line]


def _assert_agrees(out: str, tool: str, calls: int) -> None:
    rows = _rows(out, tool)
    assert len(rows) == calls, out
    for row in rows:
        assert "DIFFERENT" not in row and "differ from" not in row and "(not 50)" not in row, row
        assert "killed" not in row and "exited" not in row, row


def test_ledger_alone_prints_the_table_and_says_why_the_anchors_are_missing(tmp_path):
    missing = str(tmp_path / "no-such-python")
    proc = _anchors(tmp_path, "--mlflow-python", missing, "--trackio-python", missing)
    out = proc.stdout
    for title in TITLES:
        assert f"| {title} | ledger |" in out, out
    answers = [row.split("|")[-2].strip() for row in _rows(out, "ledger")]
    assert len(answers) == 4 and answers[0] == "20 rows" and answers[2] == "5 rows" and answers[3] == "50 rows", out
    assert "mlflow: skipped (not available" in out and "trackio: skipped (not available" in out
    assert "| ledger (SQLite) |" in out

    again = _anchors(tmp_path, "--skip-mlflow", "--skip-trackio")  # --keep: the same stores, reused
    assert "ledger: reusing" in again.stderr
    assert "mlflow: skipped (--skip-mlflow)" in again.stdout


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow (an optional benchmark dependency) "
                    "is not installed")
def test_mlflow_store_holds_every_run_and_answers_as_the_ledger_does(tmp_path):
    out = _anchors(tmp_path, "--skip-trackio").stdout
    _assert_agrees(out, "mlflow", 5)
    assert "MlflowClient.search_runs pages see 50" in out
    assert "5 runs through MlflowClient, 45 as bulk rows" in out


@pytest.mark.skipif(shutil.which("trackio") is None, reason="no `trackio` command on PATH (an optional benchmark "
                    "dependency, usually in a venv of its own)")
def test_trackio_store_holds_every_run_and_answers_as_the_ledger_does(tmp_path):
    out = _anchors(tmp_path, "--skip-mlflow").stdout
    _assert_agrees(out, "trackio", 5)
    assert "trackio.Api().runs sees 50" in out
