"""Seed repeats: sibling reproductions of one run whose jobs differ only in the seed."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Optional

from ledger.analysis.jobs import experiment_key, run_job
from ledger.store.models import Run


@dataclass(frozen=True)
class Repeats:
    """Sibling reproductions of one run with the same job up to the seed."""

    n: int
    mean: float
    std: Optional[float]  # sample standard deviation; None with one repeat
    runs: tuple[str, ...]
    values: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "std": self.std, "runs": list(self.runs), "values": list(self.values)}


def _finished_reproductions(run: Run) -> list[Run]:
    return [c for c in run.children if c.kind == "reproduction" and c.status in (None, "finished")
            and c.val_miou is not None]


def _summary(runs: list[Run]) -> Repeats:
    values = [r.val_miou for r in runs]
    return Repeats(len(values), statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None,
                   tuple(r.name for r in runs), tuple(values))


def repeats_of(run: Run) -> Optional[Repeats]:
    """The val mIoU of a run's repeats: for a reproduction its sibling group, for another run
    the largest group of its reproductions (ties: the earliest). None without any."""
    if run.kind == "reproduction":
        if run.parent is None:
            return None
        key = experiment_key(run_job(run).job)
        group = [c for c in _finished_reproductions(run.parent) if experiment_key(run_job(c).job) == key]
        return _summary(group) if group else None
    groups: dict[Optional[str], list[Run]] = {}
    for child in sorted(_finished_reproductions(run), key=lambda c: (c.position, c.id)):
        groups.setdefault(experiment_key(run_job(child).job), []).append(child)
    if not groups:
        return None
    return _summary(max(groups.values(), key=len))


def spread_check(a: Optional[Repeats], b: Optional[Repeats]) -> Optional[dict[str, Any]]:
    """Whether the mean val mIoU moved by more than the two runs' spreads together (their
    mean +- 1 std intervals do not overlap); None unless both have at least two repeats."""
    if a is None or b is None or a.n < 2 or b.n < 2:
        return None
    delta = b.mean - a.mean
    spread = (a.std or 0.0) + (b.std or 0.0)
    return {"delta": delta, "spread": spread, "exceeds": abs(delta) > spread}

