"""A run folder that explains itself without the ledger: job.json and args.yaml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_job_files(run_dir: Path, record: dict[str, Any], env: dict[str, Any]) -> None:
    """The resolved job next to its checkpoints: job.json (the record and the environment)
    and args.yaml (the job's values alone, as timm writes them).

    Args:
        run_dir: the run's folder; created if missing.
        record: what the caller stores about the job; its "job" entry holds the values.
        env: the environment the job runs in (`reproduce.environment.environment`).
    """
    import yaml

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "job.json").write_text(
        json.dumps(record | {"environment": env}, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    (run_dir / "args.yaml").write_text(yaml.safe_dump(record["job"], sort_keys=False, allow_unicode=True),
                                       encoding="utf-8")
