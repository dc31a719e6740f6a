"""A row's attempts: each start recorded, a lost one ended at its last heartbeat, the
duration their total, rows trained before attempts existed carried over."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from ledger.store.attempts import begin_attempt, close_lost, end_attempt

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def row(**fields):
    base = dict(attempts=None, duration_s=None, status="queued", host=None, pid=None, heartbeat_at=None)
    return SimpleNamespace(**(base | fields))


def test_an_attempt_lasts_from_its_start_to_its_end():
    run = row()
    assert begin_attempt(run, host="a", pid=1, from_epoch=1, now=T0) == 1
    assert run.attempts[0]["outcome"] == "running"
    end_attempt(run, "interrupted", now=T0 + timedelta(seconds=90))
    assert run.attempts[0]["outcome"] == "interrupted"
    assert run.duration_s == pytest.approx(90.0)


def test_a_killed_attempt_ends_at_its_last_heartbeat_and_counts_in_the_total():
    run = row()
    begin_attempt(run, host="a", pid=1, from_epoch=1, now=T0)
    run.heartbeat_at = (T0 + timedelta(seconds=300)).replace(tzinfo=None)  # as SQLite gives it back
    # The next start finds the first one still "running": its process died.
    assert begin_attempt(run, host="b", pid=2, from_epoch=4, now=T0 + timedelta(seconds=900)) == 2
    end_attempt(run, "finished", now=T0 + timedelta(seconds=1000))
    assert [(a["outcome"], a["duration_s"], a["from_epoch"]) for a in run.attempts] == [
        ("lost", 300.0, 1), ("finished", 100.0, 4)]
    assert run.duration_s == pytest.approx(400.0)


def test_close_lost_leaves_ended_attempts_alone():
    run = row()
    begin_attempt(run, host="a", pid=1, from_epoch=1, now=T0)
    end_attempt(run, "failed", now=T0 + timedelta(seconds=5))
    close_lost(run)
    assert [a["outcome"] for a in run.attempts] == ["failed"]
    end_attempt(run, "finished", now=T0 + timedelta(seconds=50))  # nothing live to end
    assert run.duration_s == pytest.approx(5.0)


def test_time_recorded_before_attempts_existed_is_the_first_attempt():
    run = row(duration_s=272.0, status="interrupted", host="old", pid=9)
    begin_attempt(run, host="a", pid=1, from_epoch=5, now=T0)
    end_attempt(run, "finished", now=T0 + timedelta(seconds=28))
    assert [(a["n"], a["outcome"]) for a in run.attempts] == [(1, "interrupted"), (2, "finished")]
    assert run.duration_s == pytest.approx(300.0)
