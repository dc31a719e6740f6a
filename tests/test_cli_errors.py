"""Errors a user can cause are one line and change nothing; read commands work on read-only
media and never change a file; the command line follows its ecosystem (-h, --version,
--db before the command, whole descriptions, metavars that say what to type)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SEED, cli

ledger = cli
RUN = "DeepLabV3_cosinelr"


def one_line_error(result, *parts: str) -> None:
    assert result.exit_code != 0
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for part in parts:
        assert part in lines[0], lines[0]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_unknown_url_scheme_is_one_line():
    one_line_error(ledger("list", "--db", "foo://bar"), "unknown database 'foo'")


def test_a_server_that_refuses_is_one_line():
    one_line_error(ledger("list", "--db", "postgresql+psycopg://nobody@127.0.0.1:1/none"), "cannot open the ledger")


def test_a_schema_newer_than_the_program_is_refused_without_a_change(seeded_db):
    with sqlite3.connect(seeded_db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
    before = sha(seeded_db)
    for args in (["list"], ["show", RUN], ["set", RUN, "--note", "x"], ["check"]):
        one_line_error(ledger(*args), "written by a newer ledger", "0099", "upgrade ledger")
    assert sha(seeded_db) == before


def test_reading_a_foreign_sqlite_file_leaves_it_alone(tmp_path):
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    before = sha(foreign)
    one_line_error(ledger("list", "--db", foreign), "is a database but not a ledger")
    one_line_error(ledger("compare", "a", "b", "--db", foreign), "is a database but not a ledger")
    assert sha(foreign) == before
    with sqlite3.connect(foreign) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)


@pytest.fixture
def read_only_ledger(tmp_path, seeded_db):
    """The seeded ledger on a read-only file system (a tmpfs mounted read-only); skipped
    where this process may not mount one."""
    mount = tmp_path / "ro"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a read-only file system")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        shutil.copy(seeded_db, mount / "ledger.db")
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True, capture_output=True)
        yield mount / "ledger.db"
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_read_commands_work_on_read_only_media_and_writes_say_why_not(read_only_ledger):
    db = str(read_only_ledger)
    before = sha(read_only_ledger)
    for args in (["list"], ["list", "--where", "lr=0.0001"], ["show", RUN], ["export"], ["history"],
                 ["compare", RUN, "multiple_aug_with_multi_loss"], ["check"]):
        result = ledger(*args, "--db", db)
        assert result.exit_code in (0, 1) and "Traceback" not in result.output, (args, result.output)
        assert not result.stderr.startswith("error"), (args, result.stderr)
    assert ledger("export", "--db", db).stdout == SEED.read_text(encoding="utf-8")
    one_line_error(ledger("set", RUN, "--note", "x", "--db", db), "read-only")
    assert sha(read_only_ledger) == before


def test_db_before_the_command_and_the_command_own_db(seeded_db, tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGER_DB", str(tmp_path / "elsewhere.db"))
    result = ledger("--db", seeded_db, "show", RUN, "--json")
    assert result.exit_code == 0 and RUN in result.stdout
    one_line_error(ledger("--db", seeded_db, "show", RUN, "--db", tmp_path / "missing.db"), "no ledger at")
    assert not (tmp_path / "elsewhere.db").exists()


def test_version_and_short_help_option():
    from ledger import __version__

    assert ledger("--version").stdout.strip() == f"ledger {__version__}"
    short, long = ledger("-h"), ledger("--help")
    assert short.exit_code == 0 and short.stdout == long.stdout
    assert ledger("list", "-h").exit_code == 0


def test_help_lists_whole_descriptions_and_says_what_to_type():
    import typer

    from ledger.cli import app

    proc = subprocess.run([sys.executable, "-m", "ledger", "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})
    assert "..." not in proc.stdout.replace("[ARGS]...", "")
    for name, command in typer.main.get_command(app).commands.items():
        first = " ".join(command.help.strip().split("\n\n")[0].split())
        assert first in " ".join(proc.stdout.split()), name
        text = ledger(name, "--help").stdout
        assert "<str>" not in text.split("Options:")[-1] and "list[str]" not in text.split("Options:")[-1], name


def test_filters_tell_the_truth_on_the_command_line(seeded_db):
    names = lambda *args: [r["name"] for r in json.loads(ledger("list", "--json", *args).stdout)]  # noqa: E731
    assert names("--where", "Lr=0.0001") == names("--where", "lr=0.0001") != []
    one_line_error(ledger("list", "--where", "foo=1"), "no run has the key 'foo'")
    one_line_error(ledger("list", "--where", "lrr=0.0001"), "did you mean lr")
    one_line_error(ledger("list", "--where", "lr=abc"), "lr holds number values; cannot compare it with 'abc'")
    one_line_error(ledger("list", "--where", "criterion=1"), "quote a text value")
    one_line_error(ledger("list", "--sort", "nosuch"), "no run has the key 'nosuch'")
    assert names("--sort", "-LB_MIOU", "--limit", "1") == names("--sort", "-lb_miou", "--limit", "1")


def test_filters_tell_the_truth_on_every_database(seeded_engine):
    from ledger.core.errors import LedgerError
    from ledger.store.db import transaction
    from ledger.store.sql_reader import list_runs

    with transaction(seeded_engine, write=False) as session:
        assert [r.name for r in list_runs(session, where=["LR=0.0001"])] == \
            [r.name for r in list_runs(session, where=["lr=0.0001"])]
        for where, message in ((["foo=1"], "no run has the key 'foo'"), (["lr=abc"], "lr holds number values")):
            with pytest.raises(LedgerError, match=message):
                list_runs(session, where=where)
        with pytest.raises(LedgerError, match="no run has the key 'nosuch'"):
            list_runs(session, sort="-nosuch")


def test_a_csv_pandas_cannot_read_is_one_line_and_creates_nothing(tmp_path):
    broken = tmp_path / "broken.csv"
    broken.write_text('name,lr\n"unclosed,1\nb,2\n', encoding="utf-8")
    target = tmp_path / "new.db"
    one_line_error(ledger("import", broken, "--db", target), "not a readable CSV")
    assert not target.exists()


def test_shell_completion_is_offered():
    text = ledger("--help").stdout
    assert "--install-completion" in text and "--show-completion" in text
