"""Every command is documented: it has help text and README.md shows it with an example."""

from __future__ import annotations

import re

import pytest
import typer

from conftest import REPO
from ledger.cli import app

COMMANDS = sorted(typer.main.get_command(app).commands)
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_the_commands_are_the_ones_we_document():
    assert COMMANDS == sorted(["attach", "check", "compare", "export", "history", "import", "list", "plot", "rename",
                               "queue", "reproduce", "rm", "run", "set", "show", "tag", "untag", "worker"])


@pytest.mark.parametrize("name", COMMANDS)
def test_command_has_help_and_a_readme_section_with_an_example(name):
    command = typer.main.get_command(app).commands[name]
    assert (command.help or "").strip(), f"{name} has no help text"
    assert re.search(rf"^### {name}$", README, re.MULTILINE), f"README.md has no section for {name}"
    assert re.search(rf"^ledger {name}\b", README, re.MULTILINE), f"README.md shows no example of ledger {name}"


def test_readme_gives_the_two_commands():
    blocks = re.findall(r"```sh\n(.*?)```", README, re.DOTALL)
    assert any("ledger reproduce" in b and "--data demo" in b and "pip install" in b for b in blocks)
    assert any("pytest" in b and "pip install" in b and '".[dev]"' in b for b in blocks)
