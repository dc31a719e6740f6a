"""The ledger commands through Typer's CliRunner, each on its own temporary ledger."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest

from conftest import SEED, cli

ledger = cli


def test_import_reports_and_list_shows_the_log(seeded_db):
    result = ledger("list", "--json")
    assert result.exit_code == 0
    runs = json.loads(result.stdout)
    assert len(runs) == 10 and runs[0]["name"] == "DeepLabV3_cosinelr" and runs[-1]["name"] == "Ensemble"
    table = ledger("list").stdout
    assert "multiple_aug_with_multi_loss" in table and "0.6293" in table


def test_import_report_counts(seeded_db):
    result = ledger("import", SEED, "--json")
    report = json.loads(result.stdout)
    assert (len(report["added"]), len(report["changed"]), len(report["unchanged"])) == (0, 0, 10)


def test_export_is_byte_identical(seeded_db, tmp_path):
    assert ledger("export").stdout_bytes == SEED.read_bytes()
    out = tmp_path / "log.md"
    assert ledger("export", "-o", out).exit_code == 0
    assert out.read_bytes() == SEED.read_bytes()


def test_export_csv_has_argument_columns(seeded_db):
    text = ledger("export", "--format", "csv").stdout
    header = text.splitlines()[0].split(",")
    assert header[0] == "name" and "args.weight_decay" in header
    assert len(text.splitlines()) > 10


def test_show_json_and_table(seeded_db):
    result = ledger("show", "multiple_aug_with_multi_loss", "--json")
    details = json.loads(result.stdout)
    assert details["arguments"]["criterion2"] == "focal" and details["lb_miou"] == 0.62
    assert details["notes"].startswith("0.5*focal_loss(gamma=0.75)")
    table = ledger("show", "multiple_aug_with_multi_loss").stdout
    assert "criterion2" in table and "0.5*focal_loss(gamma=0.75)" in table


def test_unknown_run_is_one_clear_line(seeded_db):
    result = ledger("show", "DeepLabV3_cosinlr")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: no run named 'DeepLabV3_cosinlr'; did you mean DeepLabV3_cosinelr, "
        "DeepLabV3_cosinelr_tmax_10_focal, DeepLabV3_cosinelr_tmax_10_backbone_ns?"
    ]
    assert "Traceback" not in result.output


def test_markup_in_notes_prints_literally(tmp_path):
    log = tmp_path / "log.md"
    log.write_text("| Run Name | ETC |\n| --- | --- |\n| r1 | [bold]not bold[/bold] \\| [red]x |\n", encoding="utf-8")
    assert ledger("import", log).exit_code == 0
    out = ledger("show", "r1").stdout
    assert "[bold]not bold[/bold] | [red]x" in out
    assert "r1" in ledger("list").stdout


def test_an_attempts_table_prints_markup_literally():
    """An attempt's host and outcome come from the ledger: text, never markup."""
    import io

    from rich.console import Console

    from ledger.cli.views import attempts_table

    attempts = [{"n": 1, "started_at": "2026-12-01T10:00:00", "host": "[bold]gpu1", "pid": 7, "from_epoch": 0,
                 "duration_s": 1.5, "outcome": "failed: [red]CUDA[/red] out of memory"},
                {"n": 2, "host": "gpu2", "outcome": "finished"}]
    console = Console(file=io.StringIO(), width=200, highlight=False)
    console.print(attempts_table(attempts))
    out = console.file.getvalue()
    assert "failed: [red]CUDA[/red] out of memory" in out and "[bold]gpu1" in out


def test_db_option_beats_environment(seeded_db, tmp_path):
    other = tmp_path / "other.db"
    assert ledger("import", SEED, "--db", other).exit_code == 0
    assert other.exists()
    assert len(json.loads(ledger("list", "--json", "--db", f"sqlite:///{other}").stdout)) == 10


def test_read_commands_do_not_create_a_ledger(tmp_path):
    missing = tmp_path / "nothing.db"
    result = ledger("list", "--db", missing)
    assert result.exit_code == 1 and "no ledger at" in result.stderr
    assert not missing.exists()


def test_dry_run_writes_nothing(seeded_db, tmp_path):
    before = hashlib.sha256(seeded_db.read_bytes()).hexdigest()
    updated = tmp_path / "v2.md"
    updated.write_text(SEED.read_text(encoding="utf-8").replace("best LB score", "best LB score (corrected)"), encoding="utf-8")
    result = ledger("import", updated, "--dry-run", "--json")
    assert json.loads(result.stdout)["changed"] == ["DeepLabV3_cosinelr_tmax_10_backbone_ns"]
    assert hashlib.sha256(seeded_db.read_bytes()).hexdigest() == before
    assert json.loads(ledger("show", "DeepLabV3_cosinelr_tmax_10_backbone_ns", "--json").stdout)["notes"] == "best LB score"


def test_bad_import_leaves_ledger_byte_identical(seeded_db, tmp_path):
    bad = tmp_path / "bad.md"
    bad.write_text("| Run Name |\n| --- |\n| a |\n| a |\n", encoding="utf-8")
    # The database and its write-ahead log; -shm is only a shared-memory index.
    data = [seeded_db, seeded_db.with_name("ledger.db-wal")]
    files = [p.read_bytes() if p.exists() else None for p in data]
    result = ledger("import", bad)
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.output
    assert [p.read_bytes() if p.exists() else None for p in data] == files


def test_failed_first_import_leaves_no_file(tmp_path):
    target = tmp_path / "new.db"
    result = ledger("import", tmp_path / "missing.md", "--db", target)
    assert result.exit_code == 1 and "no such file" in result.stderr
    assert not target.exists()


def test_list_filters_and_limit(seeded_db):
    runs = json.loads(ledger("list", "--json", "--where", "lr=0.0001", "--where", "lb_miou>0.6").stdout)
    assert [r["name"] for r in runs] == ["multiple_aug_with_multi_loss",
                                         "label_smoothing_dual_loss_histogram_equalization",
                                         "backbone_b5ns_label_smoothong_normalization"]
    top = json.loads(ledger("list", "--json", "--sort", "-lb_miou", "--limit", "1").stdout)
    assert [r["name"] for r in top] == ["Ensemble"]
    bad = ledger("list", "--where", "lr")
    assert bad.exit_code == 1 and "KEY OP VALUE" in bad.stderr


@pytest.mark.parametrize("width", [30, 60, 90, 120, 200])
@pytest.mark.parametrize("terminal", [False, True])
@pytest.mark.parametrize("model", ["모델", "모델\n둘"])
def test_a_table_drawn_no_wrap_where_it_fits_is_the_same_table(seeded_db, width, terminal, model):
    """`runs_table(rows, width)` only skips rich's wrapping where nothing would wrap: the
    same text at every width, styles included, wide characters and a line break too."""
    import io

    from rich.console import Console

    from ledger.cli.views import runs_table
    from ledger.store.readers import reading
    from ledger.store.shapes import nest_children

    with sqlite3.connect(seeded_db) as conn:
        conn.execute("UPDATE runs SET model = ?, name = '한국어_실험_' || name WHERE name = 'Ensemble'", (model,))
    with reading(None) as reader:
        rows = nest_children(reader.list_runs())
    unwrapped = all(column.no_wrap for column in runs_table(rows, width).columns)
    assert unwrapped == (width >= 120 and "\n" not in model)  # the cases skipped, and the ones not

    def drawn(table):
        console = Console(file=io.StringIO(), width=width, force_terminal=terminal, highlight=False, soft_wrap=False)
        console.print(table)
        return console.file.getvalue()

    assert drawn(runs_table(rows, width)) == drawn(runs_table(rows))
