"""Whether the trainer of a `running` row is still alive, and what to do when it is not.

A trainer records its host and process id when its row starts running and renews a
heartbeat every few seconds (`ledger.runs.Heartbeat`). A running row is judged `stale`
when the heartbeat is older than $LEDGER_STALE_AFTER seconds (default 60), or when it
runs on this host under a process id that no longer exists (a `kill -9`, a crash of the
machine's OOM killer). A process in another PID namespace (a container) on the same host
name looks gone; such setups should rely on the heartbeat and give each container its
own host name.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any, Optional

from ledger.core.clock import utcnow

HEARTBEAT_S = 5.0
STALE_ENV = "LEDGER_STALE_AFTER"
DEFAULT_STALE_AFTER_S = 60.0


def stale_after_s() -> float:
    try:
        return float(os.environ.get(STALE_ENV) or DEFAULT_STALE_AFTER_S)
    except ValueError:
        return DEFAULT_STALE_AFTER_S


def this_host() -> str:
    import socket  # only a running row asks: `ledger list` of a finished log never loads it

    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _age_s(beat: Optional[datetime], now: datetime) -> Optional[float]:
    if beat is None:
        return None
    if beat.tzinfo is None:  # SQLite keeps the UTC time without its zone
        beat = beat.replace(tzinfo=timezone.utc)
    return (now - beat).total_seconds()


def stale_reason(run: Any, now: Optional[datetime] = None) -> Optional[str]:
    """Why the running row `run` has no live trainer, or None if it is not running or is alive."""
    if run.status != "running":
        return None
    now = now or utcnow()
    age = _age_s(run.heartbeat_at, now)
    where = f"pid {run.pid} on {run.host}" if run.pid is not None else "its trainer"
    if age is None:
        return f"{where} never sent a heartbeat"
    if run.host == this_host() and run.pid is not None and not pid_alive(run.pid):
        return f"{where} is gone (last heartbeat {age:.0f} s ago)"
    if age > stale_after_s():
        return f"no heartbeat from {where} for {age:.0f} s (more than {stale_after_s():g} s)"
    return None


def shown_status(run: Any) -> Optional[str]:
    """The status a user is shown: `stale` for a running row whose trainer is gone."""
    return "stale" if stale_reason(run) is not None else run.status


def live_description(run: Any) -> str:
    age = _age_s(run.heartbeat_at, utcnow())
    return f"pid {run.pid} on {run.host}, heartbeat {age:.0f} s ago" if age is not None else f"pid {run.pid} on {run.host}"


def reap_stale(session: Any) -> list[str]:
    """Mark every stale running row `interrupted` (a queued job: back on the queue, or
    `failed` past its attempt limit), with the reason as its error; their names."""
    from sqlalchemy import select

    from ledger.store.attempts import close_lost
    from ledger.store.models import Run

    reaped = []
    for run in session.scalars(select(Run).where(Run.status == "running").with_for_update()):
        reason = stale_reason(run)
        if reason is None:
            continue
        close_lost(run)
        reaped.append(run.name)
        if run.queue:
            # A queued job whose worker died goes back on the queue for another worker,
            # which resumes it from its last checkpoint where it has one; up to its limit.
            tries, limit = len(run.attempts or []), int(run.queue.get("max_attempts") or 3)
            if run.queue.get("cancel"):
                run.status, run.error = "interrupted", f"cancelled; its worker was gone ({reason})"
            elif tries >= limit:
                run.status, run.error = "failed", f"gave up after {tries} attempts; the last: {reason}"
            else:
                run.status, run.error = "queued", f"requeued after attempt {tries}: {reason}"
            continue
        run.status = "interrupted"
        run.error = f"stale: {reason}; marked interrupted, continue with `ledger reproduce {run.name} --resume`"
    session.flush()
    return reaped
