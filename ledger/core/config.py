"""Configuration from the environment, read in one place.

`--db URL` beats `$LEDGER_DB`, which beats `./runs.db`; a plain path is a SQLite file.
Reproductions write under `--runs-dir`, else `$LEDGER_RUNS_DIR`, else `./reproductions`;
the demo data and decoded masks are cached under `$LEDGER_CACHE`, else `~/.cache/ledger`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

DEFAULT_DB = "runs.db"
DB_ENV = "LEDGER_DB"
RUNS_DIR_ENV = "LEDGER_RUNS_DIR"
CACHE_ENV = "LEDGER_CACHE"


# `ledger --db URL COMMAND`: the --db given before the command, for this invocation.
_db_before_command: Optional[str] = None


def set_db_before_command(db: Optional[str]) -> None:
    global _db_before_command
    _db_before_command = db


def resolve_url(db: Optional[str] = None) -> str:
    """The ledger's SQLAlchemy URL: `db` (the command's --db), else a --db given before the
    command, else $LEDGER_DB, else ./runs.db."""
    value = db or _db_before_command or os.environ.get(DB_ENV) or DEFAULT_DB
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def sqlite_path(url: str) -> Optional[Path]:
    """The file of a SQLite URL; None for another database or an in-memory one."""
    if not url.startswith("sqlite:///"):
        return None
    rest = url[len("sqlite:///") :]
    return None if rest in ("", ":memory:") else Path(rest)


def sqlite_read_uri(path: Path) -> str:
    """A URI that opens the SQLite file at `path` read-only. Where its folder cannot be written
    (read-only media), SQLite could not make the shared-memory file a WAL database needs to
    be read, so the file is opened as immutable: it cannot change while we read it."""
    uri = path.resolve().as_uri()
    return f"{uri}?mode=ro" if os.access(path.resolve().parent, os.W_OK) else f"{uri}?mode=ro&immutable=1"


def runs_dir(given: Optional[Path] = None) -> Path:
    """Where run folders (checkpoints, job.json, W&B files) go."""
    return Path(given or os.environ.get(RUNS_DIR_ENV) or "reproductions")


def cache_dir() -> Path:
    """Where the demo data and the decoded-mask cache live."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ledger")
