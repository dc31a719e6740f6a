"""Shared fixtures. No test writes the committed runs.db: every test gets its own ledger
through LEDGER_DB, and a session check fails the run if runs.db changed."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

# Tests never reach the network: libraries that download weights fail at once instead.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
SEED = DATA / "experiments.md"
SEED_V2 = DATA / "experiments_v2.md"
RUNS_DB = REPO / "runs.db"


# A complete job for builder tests: 64x64, tiny batches, CPU, nothing pretrained.
JOB_BASE = dict(
    run_name="t", code_state="test", model="DeepLabV3", backbone="efficientnet-b7",
    encoder_weights=None, pretrained=False, weights_path=None, weights_sha256=None, num_classes=12,
    criterion1="cross_entropy", criterion2=None, multi_loss=False, loss_weights=(0.5, 0.5),
    focal_gamma=0.0, smooth_factor=0.05, optimizer="MADGRAD", lr=1e-4, weight_decay=1e-6,
    momentum=0.0, scheduler="CosineAnnealingLR", t_max=10, eta_min=0.0, scheduler_step="epoch",
    image_size=64, max_train_images=None, max_val_images=None, input_scale="divide255",
    normalize_mean=None, normalize_std=None, histogram_equalization=False, hflip_p=0.0,
    rotate_p=0.0, rotate_limit=45, brightness_contrast_p=0.0, cutout_p=0.0, cutout_holes=4,
    cutout_size=20, clahe_p=0.0, augment_mask=True, cutmix=False, cutmix_prob=0.0, cutmix_beta=1.0,
    batch_size=2, val_batch_size=2, num_epochs=1, seed=42, num_workers=0, train_drop_last=True,
    val_drop_last=True, checkpoint_metric="val_miou", log_lr=False, device="cpu", fast=False,
    wandb_project="jaesub", wandb_entity=None, wandb_group=None, wandb_name="t",
)  # fmt: skip


def make_job(**changes):
    from reproduce.job import Job

    return Job(**{**JOB_BASE, **changes})


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@pytest.fixture(scope="session", autouse=True)
def committed_runs_db_untouched():
    before = _sha256(RUNS_DB)
    yield
    assert _sha256(RUNS_DB) == before, "a test wrote to the committed runs.db"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache (demo data, masks) for the whole session: generating it is the slow part."""
    return tmp_path_factory.mktemp("ledger-cache")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch, cache_dir):
    monkeypatch.setenv("LEDGER_DB", str(tmp_path / "ledger.db"))
    monkeypatch.setenv("LEDGER_CACHE", str(cache_dir))
    monkeypatch.setenv("LEDGER_RUNS_DIR", str(tmp_path / "reproductions"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("COLUMNS", "200")


def _postgres_url(schema: str) -> str:
    base = os.environ["LEDGER_TEST_PG_URL"]
    joiner = "&" if "?" in base else "?"
    return f"{base}{joiner}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    """A fresh, empty ledger URL: a SQLite file, or its own schema on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'param.db'}"
        return
    if not os.environ.get("LEDGER_TEST_PG_URL"):
        pytest.skip("LEDGER_TEST_PG_URL is not set")
    sqlalchemy = pytest.importorskip("sqlalchemy")
    schema = f"ledger_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(os.environ["LEDGER_TEST_PG_URL"])
    try:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    except sqlalchemy.exc.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc.__class__.__name__}")
    yield _postgres_url(schema)
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def cli(*args, **kwargs):
    """Run a `ledger` command in-process, as a user would from the shell."""
    from typer.testing import CliRunner

    from ledger.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], **kwargs)


def shown(name: str, *args) -> dict:
    """`ledger show NAME --json` (with any further options, e.g. --db), which must succeed."""
    result = cli("show", name, "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def step_series(details: dict) -> dict:
    """A `show --json` run's metrics as {name: [(step, value), ...]}."""
    return {k: [(p["step"], p["value"]) for p in v] for k, v in details["metrics"].items()}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def new_repo(root: Path) -> Path:
    """An empty git repository at `root` with a committer configured."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "t@example.com")
    git(root, "config", "user.name", "t")
    return root


@pytest.fixture
def seeded_db() -> Path:
    """This test's ledger (LEDGER_DB) holding the seed log, imported through the CLI."""
    result = cli("import", SEED)
    assert result.exit_code == 0, result.output
    path = Path(os.environ["LEDGER_DB"])
    # Move everything from the write-ahead log into the file, so that byte comparisons
    # see the data, not a checkpoint that a later connection happens to run.
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture
def engine(db_url):
    from ledger.store.db import open_ledger

    engine = open_ledger(db_url, create=True)
    yield engine
    engine.dispose()


@pytest.fixture
def seeded_engine(engine):
    """An engine on a ledger holding the seed log, on each database of `db_url`."""
    from ledger.store.db import transaction
    from ledger.store.importer import import_file

    with transaction(engine) as session:
        import_file(session, SEED)
    return engine
