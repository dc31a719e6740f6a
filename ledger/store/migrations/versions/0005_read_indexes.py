"""Read indexes: every column a filter or sort names, and the parsed arguments, indexed.

`ledger list` must answer as fast on a million runs as on ten. Three kinds of index:

- Columns. Each filterable, sortable column gets an index on (column, position): a filter
  finds its rows in it, and `--sort COL --limit N` reads the first N in order, ties in
  ledger order, in either direction on SQLite (which reads an index backwards, and
  puts NULLs last by a second pass). PostgreSQL cannot read NULLS LAST backwards, so
  the columns one sorts newest or best first get a second index, descending.
- Names, so that an unknown run name is answered without loading every name
  (`ledger.core.filters.suggest_run_names`): lower(name), for the names around it in any
  case, and on SQLite `run_names`, an FTS5 trigram index of the names alone (the search
  index of 0003 holds notes and arguments too, where every trigram is common), for the
  names that share its rarer three-letter pieces. It keeps no positions (detail=none),
  so it is small: about 50 MB at a million runs. Triggers keep it, as 0003's do.
- Arguments. `runs.args` is a JSON object with any keys, so an index per key cannot be
  declared ahead. Instead a side table `run_args` holds one row per run and key, with
  the value as a filter compares it: `num` (read as a number) and `text` (read as text),
  indexed on (key, num) and (key, text). Triggers on runs keep it in step on every
  insert, update of args, and delete (json_each on SQLite, a PL/pgSQL function with
  json_each on PostgreSQL); it is filled here for the rows already there.

The values are those today's filters compute from the JSON, so an argument filter means
the same through the table as through `json_extract`: on SQLite `num` is
CAST(value AS REAL) and `text` CAST(value AS TEXT) of the value json_each gives, which is
the value json_extract gives (of duplicate keys, the first, as json_extract reads it).
On PostgreSQL `text` is `args ->> key` and `num` the float8 of a JSON number or numeric
string (the last duplicate, as `->>` reads it); values that `CAST(... AS FLOAT)` would
refuse (booleans, words, numbers float8 cannot hold) are NULL, where the old filter
failed with an error. Keys longer than KEY_MAX characters, and args that are not a valid
JSON object, get no rows; readers fall back to the JSON for such keys. PostgreSQL
indexes only the first 200 characters of `text` (a btree entry has a size limit), so
equality there tests `left(text, 200)` first and the whole text after.

Readers use the side table where a filter is selective and the JSON where it is not (a
common value is found sooner by reading runs in the order asked for):
`ledger.store.indexed`. A later migration that rebuilds the runs table (batch mode) on
SQLite must create the triggers again, as with the search triggers of 0003.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Columns a filter or sort names (`ledger.core.filters.COLUMN_NAMES`) that have no index yet,
# each indexed with position; name, position, status and job_hash have theirs.
ORDERED = ("model", "kind", "lb_miou", "val_miou", "lb_val_miou", "args_status", "created_at")
# status has an index of its own (0003); one with position answers a filter on it from the
# index alone, where the old one sends every match to the table for its position.
WITH_POSITION = ("status",)
# On PostgreSQL, those sorted descending as often as not: a second index, DESC NULLS LAST.
DESCENDING = ("lb_miou", "val_miou", "lb_val_miou", "created_at")
KEY_MAX = 200  # `ledger.store.indexed.KEY_MAX`; a test keeps the two equal


def _sqlite_rows(run_id: str, args: str, runs: str = "") -> str:
    """A SELECT of (run_id, key, num, text) for the args `args` (SQL) of the run `run_id`,
    from the table(s) `runs` ("" in a trigger)."""
    valid = f"CASE WHEN json_valid({args}) THEN CASE WHEN json_type({args}) = 'object' THEN {args} END END"
    return (f"SELECT {run_id}, j.key, CAST(j.value AS REAL), CAST(j.value AS TEXT) FROM {runs}json_each({valid}) AS j"
            f" WHERE length(j.key) <= {KEY_MAX}")


SQLITE_INSERT = "INSERT OR IGNORE INTO run_args (run_id, key, num, text) "
SQLITE_SQL = (
    "CREATE TABLE run_args (run_id INTEGER NOT NULL, key TEXT NOT NULL, num REAL, text TEXT,"
    " PRIMARY KEY (run_id, key)) WITHOUT ROWID",
    # Filled before its indexes are made: one sort each instead of an insert per row.
    SQLITE_INSERT + _sqlite_rows("r.id", "r.args", "runs AS r, "),
    "CREATE INDEX ix_run_args_num ON run_args (key, num)",
    "CREATE INDEX ix_run_args_text ON run_args (key, text)",
    f"CREATE TRIGGER run_args_insert AFTER INSERT ON runs BEGIN {SQLITE_INSERT}{_sqlite_rows('new.id', 'new.args')};"
    " END",
    "CREATE TRIGGER run_args_update AFTER UPDATE OF args ON runs BEGIN DELETE FROM run_args WHERE run_id = old.id;"
    f" {SQLITE_INSERT}{_sqlite_rows('new.id', 'new.args')}; END",
    "CREATE TRIGGER run_args_delete AFTER DELETE ON runs BEGIN DELETE FROM run_args WHERE run_id = old.id; END",
)

NAMES_SQL = (
    "CREATE VIRTUAL TABLE run_names USING fts5(name, content='runs', content_rowid='id', tokenize='trigram',"
    " detail='none')",
    "CREATE TRIGGER run_names_insert AFTER INSERT ON runs BEGIN"
    " INSERT INTO run_names(rowid, name) VALUES (new.id, new.name); END",
    "CREATE TRIGGER run_names_delete AFTER DELETE ON runs BEGIN"
    " INSERT INTO run_names(run_names, rowid, name) VALUES ('delete', old.id, old.name); END",
    "CREATE TRIGGER run_names_update AFTER UPDATE OF name ON runs BEGIN"
    " INSERT INTO run_names(run_names, rowid, name) VALUES ('delete', old.id, old.name);"
    " INSERT INTO run_names(rowid, name) VALUES (new.id, new.name); END",
    "INSERT INTO run_names(run_names) VALUES ('rebuild')",
)

# A JSON number, or a string that reads as one, as float8; NULL for anything else. The
# pattern admits only what float8 holds (no overflow to an error inside a trigger).
PG_NUMBER = r"""
CREATE FUNCTION ledger_json_number(value json) RETURNS double precision LANGUAGE sql IMMUTABLE AS $$
SELECT CASE WHEN json_typeof(value) IN ('number', 'string') AND (
         (value #>> '{}') ~* '^\s*[-+]?(\d{1,255}(\.\d{0,255})?|\.\d{1,255})\s*$'
      OR (value #>> '{}') ~* '^\s*[-+]?(\d{1,20}(\.\d{0,20})?|\.\d{1,20})e[-+]?0*(\d{1,2}|1\d\d|2[0-7]\d|280)\s*$'
      OR (value #>> '{}') ~* '^\s*[-+]?(nan|inf|infinity)\s*$')
     THEN (value #>> '{}')::double precision END
$$"""
PG_SYNC = f"""
CREATE FUNCTION run_args_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'INSERT' THEN
    DELETE FROM run_args WHERE run_id = OLD.id;
  END IF;
  IF TG_OP <> 'DELETE' AND json_typeof(NEW.args) = 'object' THEN
    INSERT INTO run_args (run_id, key, num, text)
    SELECT DISTINCT ON (j.key) NEW.id, j.key, ledger_json_number(j.value), j.value #>> '{{}}'
    FROM json_each(NEW.args) WITH ORDINALITY AS j(key, value, n)
    WHERE length(j.key) <= {KEY_MAX} ORDER BY j.key, j.n DESC;
  END IF;
  RETURN NULL;
END $$"""
PG_SQL = (
    "CREATE TABLE run_args (run_id INTEGER NOT NULL, key TEXT NOT NULL, num DOUBLE PRECISION, text TEXT,"
    " PRIMARY KEY (run_id, key))",
    PG_NUMBER,
    PG_SYNC,
    "INSERT INTO run_args (run_id, key, num, text)"
    " SELECT DISTINCT ON (r.id, j.key) r.id, j.key, ledger_json_number(j.value), j.value #>> '{}'"
    " FROM runs AS r, json_each(r.args) WITH ORDINALITY AS j(key, value, n)"
    f" WHERE json_typeof(r.args) = 'object' AND length(j.key) <= {KEY_MAX} ORDER BY r.id, j.key, j.n DESC",
    "CREATE INDEX ix_run_args_num ON run_args (key, num)",
    "CREATE INDEX ix_run_args_text ON run_args (key, left(text, 200))",
    "CREATE TRIGGER run_args_sync AFTER INSERT OR DELETE OR UPDATE OF args ON runs"
    " FOR EACH ROW EXECUTE FUNCTION run_args_sync()",
)


def upgrade() -> None:
    conn = op.get_bind()
    for column in ORDERED:
        op.create_index(f"ix_runs_{column}", "runs", [column, "position"])
    for column in WITH_POSITION:
        op.create_index(f"ix_runs_{column}_position", "runs", [column, "position"])
    op.create_index("ix_runs_lower_name", "runs", [sa.text("lower(name)")])
    if conn.dialect.name == "postgresql":
        for column in DESCENDING:
            op.execute(f"CREATE INDEX ix_runs_{column}_desc ON runs ({column} DESC NULLS LAST, position)")
        statements = PG_SQL
    else:
        statements = SQLITE_SQL
        _create_names_index(conn)
    for statement in statements:
        conn.exec_driver_sql(statement)


def _create_names_index(conn) -> None:
    try:
        conn.exec_driver_sql(NAMES_SQL[0])
    except sa.exc.OperationalError:  # an SQLite without FTS5's trigram tokenizer: names from the btrees only
        return
    for statement in NAMES_SQL[1:]:
        conn.exec_driver_sql(statement)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS run_args_sync ON runs")
        op.execute("DROP FUNCTION IF EXISTS run_args_sync()")
        op.execute("DROP FUNCTION IF EXISTS ledger_json_number(json)")
        for column in DESCENDING:
            op.drop_index(f"ix_runs_{column}_desc", "runs")
    else:
        for trigger in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS run_args_{trigger}")
            op.execute(f"DROP TRIGGER IF EXISTS run_names_{trigger}")
        op.execute("DROP TABLE IF EXISTS run_names")
    op.execute("DROP TABLE IF EXISTS run_args")
    op.drop_index("ix_runs_lower_name", "runs")
    for column in WITH_POSITION:
        op.drop_index(f"ix_runs_{column}_position", "runs")
    for column in reversed(ORDERED):
        op.drop_index(f"ix_runs_{column}", "runs")
