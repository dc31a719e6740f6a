"""The read indexes of migration 0005: every filter column has one, the side table of the
parsed arguments follows every write, a filter means the same through it as through the
JSON, the plan takes the index only for a selective filter, and suggestions found through
the name indexes are those found among every name."""

from __future__ import annotations

import difflib
import importlib.util
import json
import sqlite3

import pytest
from sqlalchemy import inspect, select, text

from conftest import REPO
from ledger.core import filters
from ledger.core.errors import LedgerError
from ledger.store import indexed
from ledger.store.db import current_revision, make_engine, open_ledger, transaction, upgrade
from ledger.store.models import Run
from ledger.store.sql_reader import SessionReader, list_runs
from ledger.store.sqlite_reader import SqliteReader, connect

MIGRATION = REPO / "ledger" / "store" / "migrations" / "versions" / "0005_read_indexes.py"

# Values a filter may meet in `args`: numbers, text that reads as a number or not, booleans,
# null, lists and dicts, numbers as text of another form, unicode.
ODD_VALUES = [0.0001, 5e-05, 1e-05, 0.5, 0, 1, -0.0, 42, 7, 2021, 10**20, "0.5", " 7 ", "12abc", "abc", "", "focal",
              "Focal", "dice", True, False, None, [1, 2], {"k": "v"}, "한글", "1e-4", "-.5e-7", "NaN", "true"]


def _args(i: int) -> dict:
    odd = ODD_VALUES[i % len(ODD_VALUES)]
    args = {"lr": odd, "seed": ODD_VALUES[(i * 7) % len(ODD_VALUES)], "criterion": ODD_VALUES[(i * 3) % len(ODD_VALUES)],
            "run_name": f"run_{i:03d}", "flag": i % 3 == 0}
    if i % 5 == 0:
        del args["seed"]
    if i % 11 == 0:
        args["rare"] = i
    return args


def _add_runs(session, count: int, start: int = 1) -> None:
    for i in range(start, start + count):
        session.add(Run(name=f"run_{i:03d}", position=i, args_status="ok", links=[], args=_args(i),
                        model=("FPN", "DeepLabV3", "UnetPlusPlus")[i % 3], kind="reproduction" if i % 13 == 0 else "logged",
                        lb_miou=None if i % 4 else 0.5 + i / 1000, status="failed" if i % 17 == 0 else None))
    session.flush()
    # Not an object, and not JSON at all: such rows have no argument rows.
    session.add(Run(name="list_args", position=start + count, args_status="ok", links=[], args=[1, 2]))
    session.add(Run(name="no_args", position=start + count + 1, args_status="none", links=[], args=None))


@pytest.fixture
def odd_engine(db_url):
    engine = open_ledger(db_url, create=True)
    with transaction(engine) as session:
        _add_runs(session, 120)
    yield engine
    engine.dispose()


def test_key_max_is_the_migrations():
    spec = importlib.util.spec_from_file_location("migration_0005", MIGRATION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.KEY_MAX == indexed.KEY_MAX
    assert f"left(text, {indexed.PG_TEXT_PREFIX})" in " ".join(module.PG_SQL)


def test_every_filter_and_sort_column_leads_an_index(engine):
    with engine.connect() as conn:
        inspector = inspect(conn)
        leading = {index["column_names"][0] for index in inspector.get_indexes("runs") if index["column_names"]}
        leading |= {unique["column_names"][0] for unique in inspector.get_unique_constraints("runs")}
        argument_indexes = {index["name"] for index in inspector.get_indexes(indexed.ARGS_TABLE)}
    columns = set(filters.COLUMN_NAMES) | set(getattr(filters, "DATES", {}).values())
    columns -= {"date"} if "date" in getattr(filters, "DATES", {}) else set()  # compared through its ISO column
    assert columns - leading == set()
    assert {"ix_run_args_num", "ix_run_args_text"} <= argument_indexes


def _side_rows(conn) -> set[tuple]:
    return {tuple(row) for row in conn.execute(text(f"SELECT run_id, key, num, text FROM {indexed.ARGS_TABLE}"))}


def _expected_rows(conn) -> set[tuple]:
    """What the side table must hold, computed from the JSON as the filters read it."""
    if conn.dialect.name == "sqlite":
        return {tuple(row) for row in conn.execute(text(
            "SELECT r.id, j.key, CAST(j.value AS REAL), CAST(j.value AS TEXT) FROM runs AS r, json_each(r.args) AS j"
            " WHERE json_valid(r.args) AND json_type(r.args) = 'object'"))}
    out = set()
    for run_id, args in conn.execute(text("SELECT id, args FROM runs")):
        if not isinstance(args, dict):
            continue
        for key, value in args.items():
            shown = None if value is None else value if isinstance(value, str) else json.dumps(value)
            shown = {"true": "true", "false": "false"}.get(shown, shown)
            out.add((run_id, key, _pg_number(value), shown))
    return out


def _pg_number(value) -> float | None:
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _comparable(rows: set[tuple]) -> set[tuple]:
    # NaN is not equal to itself; -0.0 prints as 0.0 on one side and -0.0 on the other.
    return {(a, b, "nan" if c != c else c, d) for a, b, c, d in rows}


def test_the_side_table_follows_every_write(odd_engine):
    with odd_engine.connect() as conn:
        assert _comparable(_side_rows(conn)) == _comparable(_expected_rows(conn))
    with transaction(odd_engine) as session:
        first = session.get(Run, 1)
        first.args = {"lr": 0.3, "new": "x"}
        session.delete(session.get(Run, 2))
        session.get(Run, 3).notes = "an edit that leaves the arguments alone"
        session.add(Run(name="late", position=500, args_status="ok", links=[], args={"lr": 0.0001, "late": True}))
    with odd_engine.begin() as conn:
        conn.execute(text("UPDATE runs SET args = NULL WHERE id = 4"))
        conn.execute(text("DELETE FROM runs WHERE id = 5"))
    with odd_engine.connect() as conn:
        rows = _side_rows(conn)
        assert _comparable(rows) == _comparable(_expected_rows(conn))
        assert {key for run_id, key, *_ in rows if run_id == 1} == {"lr", "new"}
        assert not {run_id for run_id, *_ in rows} & {2, 4, 5}


def test_the_migration_fills_the_side_table_for_the_rows_there_and_goes_back(db_url):
    from alembic import command
    from alembic.config import Config

    from ledger.store.db import MIGRATIONS

    engine = make_engine(db_url)
    upgrade(engine, "0004")
    with engine.begin() as conn:
        for i in range(1, 40):
            conn.execute(text("INSERT INTO runs (id, position, name, args_status, links, kind, created_at, updated_at,"
                              " args) VALUES (:i, :i, :name, 'ok', '[]', 'logged', '2021-01-01 00:00:00',"
                              " '2021-01-01 00:00:00', :args)"), {"i": i, "name": f"r{i}", "args": json.dumps(_args(i))})
    upgrade(engine)
    with engine.connect() as conn:
        assert _comparable(_side_rows(conn)) == _comparable(_expected_rows(conn)) != set()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0004")
    with engine.connect() as conn:
        assert not inspect(conn).has_table(indexed.ARGS_TABLE)
        assert "ix_runs_lb_miou" not in {index["name"] for index in inspect(conn).get_indexes("runs")}
        conn.execute(text("UPDATE runs SET args = '{\"lr\": 1}' WHERE id = 1"))  # no trigger left to fire
        conn.commit()
    upgrade(engine)
    assert current_revision(engine) is not None
    with engine.connect() as conn:
        assert _comparable(_side_rows(conn)) == _comparable(_expected_rows(conn))
    engine.dispose()


# Every operator and reading of an argument filter, on keys holding every odd value.
ARG_FILTERS = [
    f"{key}{op}{value}"
    for key in ("lr", "seed", "criterion")
    for op in ("=", "!=", ">", ">=", "<", "<=")
    for value in ("0.0001", "0.5", "0", "1", "7", "12", "True", "False", "'focal'", "'0.5'", "'abc'", "''", "'한글'",
                  "'~'", "-1e9")
] + ["flag=True", "flag=False", "flag!=True", "rare>50", "rare=22", "run_name='run_007'", "run_name>'run_100'",
     "criterion~foc", "lr~0.5"]


def _answers(reader, where, **kw):
    """The names a filter gives, or its error: a LedgerError, or on PostgreSQL the cast of a
    value that is not a number (the old filter's error: in a savepoint, so the rest goes on)."""
    from sqlalchemy.exc import DBAPIError

    session = getattr(reader, "session", None)
    try:
        if session is not None and session.get_bind().dialect.name == "postgresql":
            with session.begin_nested():
                return [run.name for run in reader.list_runs(where=where, **kw)]
        return [run.name for run in reader.list_runs(where=where, **kw)]
    except LedgerError as exc:
        return f"LedgerError: {exc}"
    except DBAPIError:
        return "refused by the database"


def _through(monkeypatch, selective: int, call):
    monkeypatch.setattr(indexed, "SELECTIVE", selective)
    return call()


@pytest.mark.parametrize("limit,sort", [(None, None), (3, None), (4, "-lb_miou")])
def test_an_argument_filter_means_the_same_through_the_side_table(odd_engine, monkeypatch, limit, sort):
    dialect = odd_engine.dialect.name
    readers = []
    if dialect == "sqlite":
        conn = connect(odd_engine.url.database)
        assert conn is not None
        readers.append(SqliteReader(conn))
    with transaction(odd_engine, write=False) as session:
        readers.append(SessionReader(session))
        tested = 0
        for where in ARG_FILTERS:
            for reader in readers:
                by_json = _through(monkeypatch, 0, lambda: _answers(reader, [where], limit=limit, sort=sort))
                by_index = _through(monkeypatch, 10**9, lambda: _answers(reader, [where], limit=limit, sort=sort))
                if by_json != "refused by the database":
                    assert by_index == by_json, (type(reader).__name__, where)
                elif by_index != by_json and limit is None and sort is None:
                    # PostgreSQL's cast of "abc" failed; through the side table it is no number.
                    assert by_index == _numbers_only(session, where), where
                tested += not isinstance(by_json, str) and bool(by_json)
        assert tested > (len(ARG_FILTERS) if dialect == "sqlite" else 60)  # most filters find something
    if dialect == "sqlite":
        conn.close()


def _numbers_only(session, where: str) -> list[str]:
    """The runs a numeric filter holds for where only numbers (and text that reads as one) compare."""
    import operator

    cond = filters.predicate(filters.parse_where(where))
    compare = {"=": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge, "<": operator.lt,
               "<=": operator.le}[cond.op]
    out = []
    for run in session.scalars(select(Run).order_by(Run.position, Run.id)):
        value = _pg_number(run.args.get(cond.arg_key)) if isinstance(run.args, dict) else None
        if value is not None and value != value:
            value = float("inf")  # PostgreSQL orders NaN above every number (there is no infinity here)
        if value is not None and compare(value, cond.value):
            out.append(run.name)
    return out


def _statements(conn: sqlite3.Connection, call) -> list[str]:
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        call()
    finally:
        conn.set_trace_callback(None)
    return seen


def test_only_a_selective_filter_is_read_through_its_index(tmp_path, monkeypatch):
    path = tmp_path / "plan.db"
    engine = open_ledger(str(path), create=True)
    with transaction(engine) as session:
        _add_runs(session, 120)
    engine.dispose()
    monkeypatch.setattr(indexed, "SELECTIVE", 8)
    conn = connect(str(path))
    reader = SqliteReader(conn)

    def final(where):
        return [s for s in _statements(conn, lambda: reader.list_runs(where=where, limit=5)) if "ORDER BY" in s][0]

    rare, common = final(["rare=22"]), final(["flag=False"])
    assert f"IN (SELECT run_id FROM {indexed.ARGS_TABLE}" in rare and "+r.position" in rare
    assert indexed.ARGS_TABLE not in common and "json_extract" in common and "+r.position" not in common
    assert "+r.model" in final(["model=FPN", "rare=22"]) and "+r.kind" in final(["kind=reproduction"])
    # A column filter with few matches is the one read through its index.
    assert "+r.status" not in final(["status=failed", "flag=False"]) and "r.status =" in final(["status=failed"])
    conn.close()


def test_argument_keys_come_from_the_side_table(odd_engine):
    with transaction(odd_engine, write=False) as session:
        with pytest.raises(LedgerError, match="did you mean rare"):
            list_runs(session, where=["rar=1"])
        assert [r.name for r in list_runs(session, where=["RARE=22"])] == ["run_022"]


# -- suggestions ---------------------------------------------------------------------------

MODELS = ("DeepLabV3", "UnetPlusPlus", "FPN", "PSPNet")


def _structured_names(count: int) -> list[str]:
    return [f"{MODELS[i % 4]}_b{i % 7}_{'focal' if i % 3 else 'dice'}_{i:05d}" for i in range(count)]


@pytest.fixture
def many_names(db_url, monkeypatch):
    """A ledger past SUGGEST_FROM_ALL (made small), so that suggestions come from the indexes."""
    monkeypatch.setattr(filters, "SUGGEST_FROM_ALL", 50)
    engine = open_ledger(db_url, create=True)
    names = _structured_names(1500)
    with transaction(engine) as session:
        session.add_all(Run(name=name, position=i, args_status="none", links=[]) for i, name in enumerate(names, 1))
    yield engine, names
    engine.dispose()


def _typos(name: str, late_only: bool) -> list[str]:
    """`name` with one edit (a letter changed, dropped, added, two swapped) at several places."""
    out = []
    for at in (len(name) - 3, len(name) - 2) if late_only else range(0, len(name) - 1, 3):
        letter = "x" if name[at] != "x" else "y"
        out += [name[:at] + letter + name[at + 1:], name[:at] + name[at + 1:], name[:at] + letter + name[at:],
                name[:at] + name[at + 1] + name[at] + name[at + 2:]]
    return out + [name.lower(), name.upper()]


# Where no name is close: names containing it, in name order.
VAGUE = ["b6_FOCAL", "nothing like it", "PSP", "", "_00012", "focal_0001"]


def _suggested(reader, name: str) -> list[str]:
    with pytest.raises(LedgerError) as caught:
        reader.get_run(name)
    message = str(caught.value)
    assert message.startswith(f"no run named {name!r}")
    return message.split("; did you mean ", 1)[1].rstrip("?").split(", ") if "did you mean" in message else []


def test_suggestions_through_the_indexes_find_what_every_name_would(many_names):
    """A name with a typo gets its name first, as difflib among every name gives it (on
    PostgreSQL, which has no trigram index, for typos in the last letters and in case);
    where none is close, the names containing it, as before."""
    engine, names = many_names
    sqlite = engine.dialect.name == "sqlite"
    with transaction(engine, write=False) as session:
        ordered = list(session.scalars(select(Run.name).order_by(Run.name)))  # the database's order, as before
        readers = [SessionReader(session)]
        conn = connect(engine.url.database) if sqlite else None
        if conn is not None:
            readers.append(SqliteReader(conn))
        clear = 0
        for name in names[7::97]:
            for typo in _typos(name, late_only=not sqlite):
                if typo in ordered:
                    continue
                close = difflib.get_close_matches(typo, ordered, n=3, cutoff=0.5)
                if not close or close[0] != name:
                    continue  # another name is as close: not a typo with one answer
                clear += 1
                for reader in readers:
                    assert _suggested(reader, typo)[0] == name, (type(reader).__name__, typo)
        assert clear > 40
        for vague in VAGUE:
            expected = filters.closest_names(vague, ordered)
            for reader in readers:
                got = _suggested(reader, vague)
                if difflib.get_close_matches(vague, ordered, n=3, cutoff=0.5):
                    assert got and (got[0] == expected[0] or not sqlite), (type(reader).__name__, vague)
                else:
                    assert got == expected, (type(reader).__name__, vague)
        if conn is not None:
            conn.close()


def test_suggestions_do_not_read_every_name(many_names, tmp_path):
    engine, names = many_names
    if engine.dialect.name != "sqlite":
        pytest.skip("the statement trace is sqlite3's")
    conn = connect(engine.url.database)
    reader = SqliteReader(conn)
    read = []
    conn.set_trace_callback(read.append)
    with pytest.raises(LedgerError, match="did you mean UnetPlusPlus_b3_dice_00213"):
        reader.get_run("UnetPlusPlus_b3_dise_00213")
    conn.set_trace_callback(None)
    names = [statement for statement in read if statement.startswith("SELECT name FROM runs")]
    assert names and all("LIMIT" in statement or "WHERE id IN (" in statement for statement in names), names
    conn.close()
