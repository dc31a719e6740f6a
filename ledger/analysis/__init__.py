"""What each change did: library functions over an open ledger session.

- `ledger.analysis.compare`: `compare_runs`, `agreement` of a reproduction with its original;
- `ledger.analysis.history`: `history`, each logged run against the one before it;
- `ledger.analysis.repeats`: seed repeats, their mean and spread;
- `ledger.analysis.check`: `check_ledger`, the log's contradictions;
- `ledger.analysis.plots`: the same as PNG pictures;
- `ledger.analysis.jobs`: a run's job as the others compare it.

Each takes a Session and returns plain dataclasses whose `to_dict()` is what `--json`
prints. This module itself imports nothing, so the CLI can read `DEFAULT_TOL` for its help.
"""

# Largest absolute mIoU difference at which a reproduction still agrees with its original.
DEFAULT_TOL = 0.01
