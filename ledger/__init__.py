"""ledger: an experiment log kept as a database, with exact re-runs of any logged run.

A training script run by `ledger run -- CMD` reports its metrics with `ledger.log`:

    import ledger
    ledger.log(step=epoch, val_miou=0.41, train_loss=0.8)

It appends one JSON line to the file named by `$LEDGER_METRICS_FILE`, which the ledger
sets for the child process, and does nothing when the variable is unset (the script run
on its own). No database access and nothing heavy is imported.
"""

import json as _json
import math as _math
import os as _os

__version__ = "0.1.0"

METRICS_FILE_ENV = "LEDGER_METRICS_FILE"


def log(step=None, **metrics):
    """Record `metrics` (name -> number) at `step` for the ledger row running this script."""
    path = _os.environ.get(METRICS_FILE_ENV)
    if not path:
        return
    record = {} if step is None else {"step": int(step)}
    for name, value in metrics.items():
        value = float(value)
        record[name] = value if _math.isfinite(value) else str(value)
    with open(path, "a", encoding="utf-8") as f:
        f.write(_json.dumps(record) + "\n")
