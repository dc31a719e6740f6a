"""The store: the tables, migrations, the two readers (SQLAlchemy and stdlib sqlite3),
import, export, and the edits a command makes to a run. Uses `ledger.core` only."""
