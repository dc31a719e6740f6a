"""Opening a ledger: connection settings, schema migrations, one transaction per command.

Which database is `ledger.core.config.resolve_url`'s to say; any SQLAlchemy URL works.
SQLAlchemy is imported only when an engine is made and Alembic only when the schema has
to change: the stdlib read path (`ledger.store.sqlite_reader`) needs only the head revision.
"""

from __future__ import annotations

import functools
import os
import random
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, TypeVar

from ledger.core.config import resolve_url, sqlite_path, sqlite_read_uri
from ledger.core.errors import LedgerError

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

# The newest migration in ledger/migrations/versions; a test keeps the two in step.
HEAD_REVISION = "0006"
MIGRATIONS = Path(__file__).with_name("migrations")


# How long a SQLite writer waits for another's write lock before giving up. Team ledgers
# see bursts of writers (8 processes importing and editing at once queue for seconds).
BUSY_TIMEOUT_S = 30


def _on_sqlite_connect(dbapi_connection, _record, *, read_only: bool = False) -> None:
    # The driver would BEGIN on its own, lazily, after a read-modify-write has already read;
    # `_on_sqlite_begin` says when and how a transaction begins instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
    if read_only:  # no pragma that writes the file: it stays exactly as it is
        cursor.execute("PRAGMA query_only=ON")
    else:
        cursor.execute("PRAGMA journal_mode=WAL")
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


def make_engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine on `url`; SQLite gets WAL, a busy timeout and foreign keys.

    `read_only` (SQLite): the file is opened read-only and left exactly as it is: no switch
    to WAL, nothing written, so that it can be read on read-only media.
    """
    from sqlalchemy import create_engine, event
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        if url.startswith("sqlite") and read_only:
            uri = sqlite_read_uri(sqlite_path(url))
            engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, timeout=5,
                                                                                 check_same_thread=False))
            event.listen(engine, "connect", functools.partial(_on_sqlite_connect, read_only=True))
            event.listen(engine, "begin", _on_sqlite_begin)
            return engine.execution_options(**{READ_ONLY: True})
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
            event.listen(engine, "connect", _on_sqlite_connect)
            event.listen(engine, "begin", _on_sqlite_begin)
            return engine
        return create_engine(url)
    except (NoSuchModuleError, ArgumentError, ValueError) as exc:
        scheme = url.split("://", 1)[0]
        raise LedgerError(f"cannot open the ledger at {url}: unknown database {scheme!r} ({one_line(exc)}); give a "
                          "SQLite path or a URL such as postgresql+psycopg://user@host/db") from None


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (a server's error spans several)."""
    text = str(getattr(exc, "orig", None) or exc)
    return " ".join(part.strip() for part in text.splitlines() if part.strip()) or exc.__class__.__name__


def known_revisions() -> list[str]:
    return sorted(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


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


def open_ledger(db: str | None = None, *, create: bool = False, read_only: bool = False) -> Engine:
    """An engine on an up-to-date ledger.

    With `create`, a missing SQLite file or an empty database gets the schema; without it,
    a missing ledger is a `LedgerError` (read commands never create files). A ledger made
    by an older version is upgraded in place, except with `read_only` (the read commands):
    a SQLite file is then opened read-only and never changed, and one at an older schema
    is read through an upgraded copy in memory.
    """
    url = resolve_url(db)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        if not create:
            raise LedgerError(f"no ledger at {path}: run `ledger import LOG.md` to create one, or pass --db")
        path.parent.mkdir(parents=True, exist_ok=True)
    read_only = read_only and not create
    writable = path is None or os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))
    if not read_only and not writable:
        # SQLite needs to write the file and, beside it, its journal.
        raise LedgerError(f"cannot write the ledger at {path}: the file or its folder is read-only; read commands "
                          "(list, show, export, compare, history, check) still work")
    engine = make_engine(url, read_only=read_only and path is not None)
    try:
        revision = current_revision(engine)
    except Exception as exc:  # an unreachable server, a file that is not SQLite, a read-only file
        mapped = _storage_error(exc)
        if isinstance(mapped, LedgerError):
            raise mapped from None
        raise LedgerError(f"cannot open the ledger at {url}: {exc.__class__.__name__}: {one_line(exc)}") from None
    if revision == HEAD_REVISION:
        return engine
    if revision is not None and revision not in known_revisions():
        raise LedgerError(f"the ledger at {url} was written by a newer ledger (schema revision {revision}; this one "
                          f"knows up to {HEAD_REVISION}): upgrade ledger")
    if revision is None:
        from sqlalchemy import inspect

        with engine.execution_options(**{READ_ONLY: True}).connect() as conn:
            tables = inspect(conn).get_table_names()
        if tables:
            raise LedgerError(f"{url} is a database but not a ledger (tables: {', '.join(sorted(tables))})")
        if not create:
            raise LedgerError(f"the ledger at {url} is empty: run `ledger import LOG.md` first")
    if read_only:
        if path is None:
            raise LedgerError(f"the ledger at {url} has the older schema {revision}; a write command (such as "
                              "`ledger check --fix`) upgrades it")
        engine.dispose()
        return _upgraded_copy(path)
    upgrade(engine)
    return engine


def _upgraded_copy(path: Path) -> Engine:
    """An in-memory copy of an old SQLite ledger, brought to the current schema; the file is untouched."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.pool import StaticPool

    memory = sqlite3.connect(":memory:", check_same_thread=False)
    source = sqlite3.connect(sqlite_read_uri(path), uri=True, timeout=5)
    try:
        source.backup(memory)
    finally:
        source.close()
    engine = create_engine("sqlite://", creator=lambda: memory, poolclass=StaticPool)
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
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
    from sqlalchemy.exc import OperationalError

    try:
        with session_factory(engine, write=write).begin() as session:
            yield session
    except OperationalError as exc:
        raise _storage_error(exc) from None


def _storage_error(exc: BaseException) -> BaseException:
    """The error a user can act on for what the database refused; others as they are."""
    text = one_line(exc)
    lowered = text.lower()
    if "readonly" in lowered or "read-only" in lowered or "read only" in lowered:
        return LedgerError(f"cannot write the ledger: it is read-only here ({text}); use a writable copy, or "
                           "only read commands")
    if "database is locked" in lowered:
        return LedgerError(f"the ledger is busy: other processes held its write lock for more than {BUSY_TIMEOUT_S} s; "
                           "try again")
    if "disk is full" in lowered or "no space" in lowered:
        return LedgerError(f"cannot write the ledger: the disk is full ({text}); nothing was written")
    return exc


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
