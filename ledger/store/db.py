"""Opening a ledger: connection settings, schema migrations, one transaction per command.

Which database is `ledger.core.config.resolve_url`'s to say; any SQLAlchemy URL works.
SQLAlchemy is imported only when an engine is made and Alembic only when the schema has
to change: the stdlib read path (`ledger.store.sqlite_reader`) needs only the head revision.
"""

from __future__ import annotations

import random
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, TypeVar

from ledger.core.config import resolve_url, sqlite_path
from ledger.core.errors import LedgerError

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

# The newest migration in ledger/migrations/versions; a test keeps the two in step.
HEAD_REVISION = "0003"
MIGRATIONS = Path(__file__).with_name("migrations")


def _on_sqlite_connect(dbapi_connection, _record) -> None:
    # The driver would BEGIN on its own, lazily, after a read-modify-write has already read;
    # `_on_sqlite_begin` says when and how a transaction begins instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _on_sqlite_begin(conn) -> None:
    # A write takes SQLite's write lock as it begins (IMMEDIATE): two read-modify-writes
    # cannot interleave, and a writer that has to wait does so here, under busy_timeout,
    # rather than failing halfway. Reads begin DEFERRED and never wait for writers.
    deferred = conn.get_execution_options().get(READ_ONLY, False)
    conn.exec_driver_sql("BEGIN DEFERRED" if deferred else "BEGIN IMMEDIATE")


# Execution option of the transactions that only read (see `transaction`).
READ_ONLY = "ledger_read_only"


def make_engine(url: str) -> Engine:
    from sqlalchemy import create_engine, event

    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 5})
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "begin", _on_sqlite_begin)
        return engine
    return create_engine(url)


def current_revision(engine: Engine) -> str | None:
    from sqlalchemy import inspect, text

    with engine.execution_options(**{READ_ONLY: True}).connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` with the project's Alembic migrations."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def open_ledger(db: str | None = None, *, create: bool = False) -> Engine:
    """An engine on an up-to-date ledger.

    With `create`, a missing SQLite file or an empty database gets the schema; without it,
    a missing ledger is a `LedgerError` (read commands never create files).
    """
    url = resolve_url(db)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        if not create:
            raise LedgerError(f"no ledger at {path}: run `ledger import LOG.md` to create one, or pass --db")
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    try:
        revision = current_revision(engine)
    except Exception as exc:  # an unreachable server, a file that is not SQLite
        raise LedgerError(f"cannot open the ledger at {url}: {exc.__class__.__name__}: {exc}") from exc
    if revision == HEAD_REVISION:
        return engine
    if revision is None:
        from sqlalchemy import inspect

        with engine.execution_options(**{READ_ONLY: True}).connect() as conn:
            tables = inspect(conn).get_table_names()
        if tables:
            raise LedgerError(f"{url} is a database but not a ledger (tables: {', '.join(sorted(tables))})")
        if not create:
            raise LedgerError(f"the ledger at {url} is empty: run `ledger import LOG.md` first")
    upgrade(engine)
    return engine


def session_factory(engine: Engine, *, write: bool = True) -> sessionmaker[Session]:
    from sqlalchemy.orm import sessionmaker

    return sessionmaker(engine if write else engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)


@contextmanager
def transaction(engine: Engine, *, write: bool = True) -> Iterator[Session]:
    """One transaction per command: everything it wrote, or nothing.

    `write=False` for a command that only reads: on SQLite it then neither waits for nor
    blocks a writer. A write transaction holds SQLite's write lock from its start; on
    PostgreSQL a read-modify-write locks its row (`get_run(..., for_update=True)`).
    """
    with session_factory(engine, write=write).begin() as session:
        yield session


T = TypeVar("T")


def write_retrying(engine: Engine, work: Callable[[Session], T], *, attempts: int = 8) -> T:
    """`work(session)` in a write transaction, run again from the start when a concurrent
    writer got a unique value (a run's name or position) first.

    On PostgreSQL two appends can read the same last position at once; the unique index
    lets one commit and fails the other, which then reads the ledger afresh and appends
    after it. (SQLite's write lock already serialises them.)
    """
    from sqlalchemy.exc import IntegrityError

    for attempt in range(1, attempts + 1):
        try:
            with transaction(engine) as session:
                return work(session)
        except IntegrityError as exc:
            if not _unique_violation(exc):
                raise
            if attempt == attempts:
                raise LedgerError(f"other writers kept taking the same run name or position; gave up after "
                                  f"{attempts} tries") from None
            time.sleep(random.uniform(0.0, 0.005 * attempt))
    raise AssertionError("unreachable")


def _unique_violation(exc: Exception) -> bool:
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) == "23505" or "UNIQUE constraint failed" in str(orig)
