"""The lean start: `ledger --help`, `--version`, `list` and `show` from the shell are answered
without Typer (`ledger.cli.fast`), and what they print is, byte for byte, what the Typer
app prints; whatever the fast path does not know goes to Typer."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import SEED
from ledger.cli import fast, helptext
from ledger.cli._help import TOP_HELP

RUN = "DeepLabV3_cosinelr_tmax_10_backbone_ns"


def test_the_stored_help_is_what_typer_renders():
    assert TOP_HELP == helptext.render_top_help(), "the commands' help changed: run `python -m ledger.cli.helptext`"


@pytest.fixture
def ledger_file(seeded_db):
    return seeded_db


def _shell(args: list[str], env: dict) -> subprocess.CompletedProcess:
    """`python -m ledger ARGS` as a user runs it: the fast path where it answers."""
    return subprocess.run([sys.executable, "-m", "ledger", *args], capture_output=True, text=True, env=env, timeout=120)


def _typer(args: list[str], env: dict):
    from ledger.cli import app

    return CliRunner().invoke(app, args, prog_name="python -m ledger", env=env)


SAME = [
    ["--help"], ["-h"], ["--version"],
    ["list"], ["list", "--limit", "3"], ["list", "-n2", "--json"], ["list", "--limit=2", "--sort=-lb_miou"],
    ["list", "--json", "--where", "lr=0.0001", "-w", "lb_miou>0.6", "--sort", "-lb_miou"],
    ["list", "--search", "cutmix", "--json"], ["list", "-S", "cutmix", "-s", "name"],
    ["list", "--where", "tag=nothing"], ["list", "--limit", "0"],
    ["show", RUN], ["show", RUN, "--json"], ["show", "--json", RUN],
    ["--db", "{db}", "list", "--limit", "1"], ["--db={db}", "show", RUN], ["list", "--limit", "1", "--db", "{db}"],
    # Errors a user can cause: one line on stderr, exit 1, from either path.
    ["show", "DeepLabV3_cosinlr"], ["show", ""], ["list", "--where", "lrr=0.0001"], ["list", "--where", "lr=abc"],
    ["list", "--sort", "nosuch"], ["list", "--limit", "-1"], ["list", "--search", " "],
    ["list", "--db", "{missing}"], ["show", RUN, "--db", "foo://bar"],
]


@pytest.mark.parametrize("args", SAME, ids=" ".join)
def test_the_fast_path_prints_what_typer_prints(ledger_file, tmp_path, args):
    args = [a.format(db=ledger_file, missing=tmp_path / "missing.db") for a in args]
    env = {**os.environ, "LEDGER_DB": str(ledger_file), "COLUMNS": "200"}
    shell, typer = _shell(args, env), _typer(args, {"COLUMNS": "200"})
    assert shell.returncode == typer.exit_code, (shell.stderr, typer.output)
    assert shell.stdout == typer.stdout
    assert shell.stderr == typer.stderr


@pytest.mark.parametrize("args", [
    [], ["list", "--help"], ["show", "-h"], ["list", "--bogus"], ["list", "--limit", "x"], ["list", "--limit"],
    ["show"], ["show", "a", "b"], ["show", "--", "-x"], ["list", "extra"], ["--version", "list"], ["--db"],
    ["import", str(SEED)], ["list", "--json=1"], ["list", "-x"], ["--install-completion"],
], ids=" ".join)
def test_what_the_fast_path_does_not_know_goes_to_typer(args, capsys):
    assert fast.answer(args) is None
    assert capsys.readouterr() == ("", "")


def test_a_narrow_terminal_gets_its_help_from_typer(monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    assert fast.answer(["--help"]) is None
    monkeypatch.setenv("COLUMNS", "80")
    assert fast.answer(["--help"]) == 0


def _imported(args: list[str], db) -> set[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "ledger", *args], capture_output=True, text=True,
                          env={**os.environ, "LEDGER_DB": str(db)}, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    names = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "ledger.cli" in names, proc.stderr[-2000:]
    return names


def _packages(args: list[str], db) -> set[str]:
    return {name.split(".")[0] for name in _imported(args, db)}


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["list", "--limit", "3"], ["show", RUN],
                                  ["list", "--json", "--where", "lr=0.0001"], ["show", "DeepLabV3_cosinlr"]],
                         ids=" ".join)
def test_the_fast_path_imports_neither_typer_nor_sqlalchemy(ledger_file, args):
    imported = _packages(args, ledger_file)
    assert imported & {"typer", "click", "pydantic", "sqlalchemy", "alembic"} == set()
    if args[0].startswith("--"):
        assert imported & {"rich", "sqlite3", "json"} <= {"json"}  # help and version: nothing of the ledger's


def test_a_plain_list_loads_only_what_it_draws(ledger_file):
    """What only some runs or some options need stays out of `ledger list` (each costs
    milliseconds on every call): the cell and argument readers (a filter's value, a shown
    run's score kinds), difflib (an unknown name), socket (a running row's host) and
    rich's emoji table (a string rendered as markup)."""
    imported = _imported(["list", "--limit", "3"], ledger_file)
    assert imported & {"ledger.core.args", "ledger.core.cells", "difflib", "socket", "rich._emoji_codes"} == set()


def test_show_loads_the_cell_readers_but_not_the_parsers(ledger_file):
    """`show` names each score's kind and the row's other cells (ledger.core.cells), without
    the argument parser or the Markdown document reader, which only an import needs."""
    imported = _imported(["show", RUN], ledger_file)
    assert "ledger.core.cells" in imported
    assert imported & {"ledger.core.args", "ledger.core.markdown", "difflib", "socket"} == set()
