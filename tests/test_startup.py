"""Start-up: the read commands never import the training stack or pandas, and every
command has working help. Import checks run `python -X importtime` in a real process,
because an in-process test would see whatever the test session already imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from conftest import SEED
from ledger.cli import app

TRAINING_STACK = {
    "torch", "torchvision", "timm", "albumentations", "segmentation_models_pytorch", "wandb", "cv2",
    "matplotlib", "madgrad", "pycocotools",
}
# pandas drags numpy in; only the flat export may pay for them.
HEAVY = TRAINING_STACK | {"pandas", "numpy"}
SHOWN_RUN = "DeepLabV3_cosinelr_tmax_10_backbone_ns"


@pytest.fixture
def small_ledger(tmp_path) -> Path:
    from ledger.store.db import open_ledger, transaction
    from ledger.store.importer import import_file

    path = tmp_path / "small.db"
    engine = open_ledger(str(path), create=True)
    with transaction(engine) as session:
        import_file(session, SEED)
    engine.dispose()
    return path


def imported_modules(args: list[str], db: Path) -> tuple[set[str], bytes]:
    """Modules `python -m ledger ARGS` imports, from `-X importtime` on stderr; and stdout."""
    env = {**os.environ, "LEDGER_DB": str(db)}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ledger", *args],
        env=env, capture_output=True, timeout=120,
    )
    stderr = proc.stderr.decode("utf-8", errors="replace")
    assert proc.returncode == 0, stderr[-2000:]
    modules = set()
    for line in stderr.splitlines():
        # "import time:   self [us] | cumulative | imported package" (the first line is the header)
        if not line.startswith("import time:"):
            continue
        name = line.rsplit("|", 1)[-1].strip()
        if name and name != "imported package":
            modules.add(name)
    assert "ledger.cli" in modules, "no -X importtime output was read"
    return modules, proc.stdout


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


@pytest.mark.parametrize(
    "args",
    [
        ["list"],
        ["list", "--json", "--where", "lr=0.0001", "--limit", "3"],
        ["show", SHOWN_RUN],
        ["show", SHOWN_RUN, "--json"],
        ["export"],
        ["--help"],
    ],
    ids=lambda args: " ".join(args),
)
def test_read_commands_import_neither_training_stack_nor_pandas(small_ledger, args):
    modules, stdout = imported_modules(args, small_ledger)
    assert top_level(modules) & HEAVY == set()
    if args[0] == "list":
        assert b"DeepLabV3" in stdout
    if args[0] == "show":
        assert SHOWN_RUN.encode() in stdout
    if args == ["export"]:
        assert stdout == SEED.read_bytes()


def test_csv_export_uses_neither_pandas_nor_the_training_stack(small_ledger):
    modules, stdout = imported_modules(["export", "--format", "csv"], small_ledger)
    assert "sqlite3" in top_level(modules)  # the check below means something only if imports were seen
    assert top_level(modules) & (TRAINING_STACK | {"pandas", "numpy"}) == set()
    assert stdout.startswith(b"name,")


runner = CliRunner()


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_top_level_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    for name in typer.main.get_command(app).commands:
        assert name in result.output


@pytest.mark.parametrize("name", sorted(typer.main.get_command(app).commands))
def test_every_command_has_help(name):
    command = typer.main.get_command(app).commands[name]
    assert command.help and command.help.strip(), f"`ledger {name}` has no help text"
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert f"ledger {name}" in result.output or f" {name} " in result.output
    first_line = command.help.strip().splitlines()[0]
    assert _flat(first_line) in _flat(result.output)
    for param in command.params:
        if getattr(param, "opts", None) and param.param_type_name == "option" and not param.hidden:
            assert any(opt in result.output for opt in param.opts), f"{param.opts} missing from `{name} --help`"
