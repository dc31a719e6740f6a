"""A row's attempts: each start of its job, who ran it, for how long, how it ended.

A run can be trained in several goes: interrupted and resumed, killed with SIGKILL and
taken over, restarted on another machine. Each go is one entry of `runs.attempts`:

    {"n": 2, "host": "gpu-1", "pid": 4242, "started_at": "...", "ended_at": "...",
     "duration_s": 812.4, "outcome": "finished", "from_epoch": 4}

`outcome` is `running` while the attempt lives, then `finished`, `failed`,
`interrupted`, or `lost` when its process died without a word (the attempt then ends at
its last heartbeat). The row's `duration_s` is the total over its attempts.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from ledger.core.clock import utcnow


def _parse(value: Optional[str]) -> Optional[datetime]:
    return datetime.fromisoformat(value) if value else None


def _aware(moment: Optional[datetime]) -> Optional[datetime]:
    if moment is not None and moment.tzinfo is None:  # SQLite keeps UTC without its zone
        return moment.replace(tzinfo=timezone.utc)
    return moment


def _history(run: Any) -> list[dict[str, Any]]:
    attempts = [dict(a) for a in (run.attempts or [])]
    if not attempts and run.duration_s:
        # A row trained before attempts were recorded: its time so far is one attempt.
        attempts.append({"n": 1, "host": run.host, "pid": run.pid, "started_at": None, "ended_at": None,
                         "duration_s": run.duration_s, "outcome": run.status or "interrupted", "from_epoch": 1})
    return attempts


def _close(attempt: dict[str, Any], outcome: str, ended: Optional[datetime]) -> None:
    started = _parse(attempt.get("started_at"))
    attempt["outcome"] = outcome
    attempt["ended_at"] = ended.isoformat() if ended else None
    if started is not None and ended is not None:
        attempt["duration_s"] = round(max(0.0, (ended - started).total_seconds()), 3)


def _store(run: Any, attempts: list[dict[str, Any]]) -> None:
    run.attempts = attempts  # a new list: the ORM does not see changes made inside a JSON value
    run.duration_s = round(sum(a.get("duration_s") or 0.0 for a in attempts), 3) if attempts else None


def close_lost(run: Any) -> None:
    """End the row's live attempt, if any, as `lost` at its last heartbeat (its process is gone)."""
    attempts = _history(run)
    if attempts and attempts[-1].get("outcome") == "running":
        _close(attempts[-1], "lost", _aware(run.heartbeat_at) or _parse(attempts[-1].get("started_at")))
        _store(run, attempts)


def begin_attempt(run: Any, *, host: str, pid: int, from_epoch: int, now: Optional[datetime] = None) -> int:
    """Record a new attempt of the row's job; an earlier one still marked running was lost. Its number.

    A queued row's attempt also names the worker and GPU that claimed it (`run.queue`)."""
    close_lost(run)
    attempts = _history(run)
    entry = {"n": len(attempts) + 1, "host": host, "pid": pid, "started_at": (now or utcnow()).isoformat(),
             "ended_at": None, "duration_s": 0.0, "outcome": "running", "from_epoch": from_epoch}
    queue = getattr(run, "queue", None) or {}
    if queue.get("worker"):
        entry |= {"worker": queue["worker"], "gpu": queue.get("gpu")}
    attempts.append(entry)
    _store(run, attempts)
    return len(attempts)


def end_attempt(run: Any, outcome: str, now: Optional[datetime] = None) -> None:
    """End the row's live attempt with `outcome` (finished, failed, interrupted) now."""
    attempts = _history(run)
    if attempts and attempts[-1].get("outcome") == "running":
        _close(attempts[-1], outcome, now or utcnow())
        _store(run, attempts)

