"""The reader a read command gets: stdlib sqlite3 where it can, SQLAlchemy elsewhere."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional

from ledger.store.sqlite_reader import SqliteReader, connect


@contextmanager
def reading(db: Optional[str] = None) -> Iterator[Any]:
    """A reader for the read commands: `list_runs`, `get_run`, and `source` for the flat export.

    stdlib sqlite3 on an up-to-date SQLite ledger (`ledger.store.sqlite_reader`), else a
    SQLAlchemy session in one transaction (`ledger.store.sql_reader.SessionReader`).
    Records stay usable inside the block.
    """
    conn = connect(db)
    if conn is None:
        from ledger.store.db import open_ledger, transaction
        from ledger.store.sql_reader import SessionReader

        with transaction(open_ledger(db, read_only=True), write=False) as session:
            yield SessionReader(session)
        return
    try:
        yield SqliteReader(conn)
    finally:
        conn.close()
