"""Opening a ledger: connection settings, schema migrations, one transaction per command.

Which database is `ledger.core.config.resolve_url`'s to say; any SQLAlchemy URL works.
SQLAlchemy is imported only when an engine is made and Alembic only when the schema has
to change: the stdlib read path (`ledger.store.sqlite_reader`) needs only the head revision.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from ledger.core.config import resolve_url, sqlite_path
from ledger.core.errors import LedgerError

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

# The newest migration in ledger/migrations/versions; a test keeps the two in step.
HEAD_REVISION = "0002"
MIGRATIONS = Path(__file__).with_name("migrations")


def _on_sqlite_connect(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    from sqlalchemy import create_engine, event

    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 5})
        event.listen(engine, "connect", _on_sqlite_connect)
        return engine
    return create_engine(url)


def current_revision(engine: Engine) -> str | None:
    from sqlalchemy import inspect, text

    with engine.connect() as conn:
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

        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
        if tables:
            raise LedgerError(f"{url} is a database but not a ledger (tables: {', '.join(sorted(tables))})")
        if not create:
            raise LedgerError(f"the ledger at {url} is empty: run `ledger import LOG.md` first")
    upgrade(engine)
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    from sqlalchemy.orm import sessionmaker

    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One transaction per command: everything it wrote, or nothing."""
    with session_factory(engine).begin() as session:
        yield session
