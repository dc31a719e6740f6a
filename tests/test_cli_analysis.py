"""`ledger compare`, `history`, `check` and `set` through Typer's CliRunner."""

from __future__ import annotations

import json

import pytest

from conftest import SEED, SEED_V2, cli
from ledger.core.markdown import split_row

ledger = cli
NS = "DeepLabV3_cosinelr_tmax_10_backbone_ns"
MULTI = "multiple_aug_with_multi_loss"


def test_compare_json_lists_the_differences(seeded_db):
    result = ledger("compare", NS, MULTI, "--json")
    assert result.exit_code == 0, result.output
    cmp = json.loads(result.stdout)
    assert [(a["key"], a["values"]) for a in cmp["arguments"]] == [
        ("criterion", ["cross_entropy", None]), ("criterion1", [None, "cross_entropy"]),
        ("criterion2", [None, "focal"]), ("cutmix", [None, False]), ("multi_loss", [None, True]),
        ("num_epochs", [15, 20]), ("run_name", ["DeepLabV3_cosinelr_tmax_10", MULTI]),
        ("weight_decay", [1e-06, 0.0001]),
    ]
    assert [(j["field"], j["values"]) for j in cmp["job"]] == [
        ("code_state", ["b204f67", "12e9e30"]), ("criterion2", [None, "focal"]), ("multi_loss", [False, True]),
        ("focal_gamma", [0.0, 0.75]), ("weight_decay", [1e-06, 0.0001]), ("t_max", [10, 20]),
        ("hflip_p", [0.0, 0.3]), ("rotate_p", [0.0, 0.3]), ("brightness_contrast_p", [0.0, 0.3]),
        ("augment_mask", [True, False]), ("cutmix_prob", [0.0, 0.3]), ("num_epochs", [15, 20]),
    ]
    assert cmp["tol"] == 0.01


def test_compare_table_and_markdown(seeded_db):
    table = ledger("compare", NS, MULTI).stdout
    for text in ("criterion1", "—", "1e-06", "0.75 (notes)", "t_max", "10 (code-state)", "0.6200"):
        assert text in table
    md = ledger("compare", NS, MULTI, "--format", "md").stdout.splitlines()
    assert md[0] == f"|  | {NS} | {MULTI} |"
    assert md[1] == "| --- | --- | --- |"
    assert md[2] == "| **arguments** |  |  |"
    assert "| weight_decay | 1e-06 | 0.0001 |" in md
    assert "| t_max | 10 (code-state) | 20 (code-state) |" in md
    assert "| LB mIoU | — | 0.6200 |" in md


def test_compare_markdown_escapes_pipes_and_table_prints_markup_literally(tmp_path):
    log = tmp_path / "log.md"
    log.write_text(
        "| Run Name | Arguments |\n| --- | --- |\n"
        "| base | lr=0.0001, run_name='base' |\n"
        "| [red]x\\|y | lr=0.0002, run_name='[red]x' |\n",
        encoding="utf-8",
    )
    assert ledger("import", log).exit_code == 0
    md = ledger("compare", "base", "[red]x|y", "--format", "md").stdout.splitlines()
    assert md[0] == "|  | base | [red]x\\|y |"
    assert all(len(split_row(line)) == 3 for line in md)
    table = ledger("compare", "base", "[red]x|y").stdout
    assert "[red]x|y" in table and "'[red]x'" in table


@pytest.mark.parametrize("args, message", [
    (["compare", NS], "error: compare needs at least two runs"),
    (["compare", NS, MULTI, "--json", "--format", "md"], "error: pass either --json or --format md, not both"),
    (["compare", NS, MULTI, "--format", "html"], "error: unknown format 'html'; use one of: table, md"),
    (["history", "--format", "csv"], "error: unknown format 'csv'; use one of: table, md"),
    (["set", MULTI], "error: nothing to set: pass --lb, --clear-lb, --note, --notes, --clear-notes or --link"),
    (["set", "nope", "--lb", "0.5"], "error: no run named 'nope'"),
])
def test_user_errors_are_one_line(seeded_db, args, message):
    result = ledger(*args)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [message]


def test_history_json_table_and_markdown(seeded_db):
    entries = json.loads(ledger("history", "--json").stdout)
    assert [(e["name"], e["confounded"]) for e in entries][-4:] == [
        (MULTI, True), ("label_smoothing_dual_loss_histogram_equalization", True),
        ("backbone_b5ns_label_smoothong_normalization", True), ("Ensemble", None),
    ]
    assert entries[6]["lb_delta"] == pytest.approx(0.02)
    table = ledger("history").stdout
    assert "+0.0200" in table and "multiple_aug_with_multi_loss" in table
    row = next(split_row(line) for line in ledger("history", "--format", "md").stdout.splitlines() if MULTI in line)
    assert row[:5] == ["2021-05-04", MULTI, "0.6200", "+0.0200", ""]
    assert row[5] == (
        "args: criterion 'cross_entropy'→—, criterion1 —→'cross_entropy', criterion2 —→'focal', multi_loss —→True; "
        "job: focal_gamma 0.0→0.75 (notes), t_max 10→20 (code-state), hflip_p 0.5→0.3 (code-state), "
        "rotate_p 0.0→0.3 (code-state), brightness_contrast_p 0.0→0.3 (code-state), "
        "augment_mask True→False (code-state), cutmix_prob 1.0→0.3 (code-state); code ff6cbeb→12e9e30"
    )
    assert row[6] == "no: 11 changes at once"

    assert ledger("import", SEED_V2).exit_code == 0
    md = ledger("history", "--format", "md").stdout.splitlines()
    assert md[0] == "| Date | Run | LB mIoU | Δ LB | val mIoU | Changed | Attributable | Notes |"
    assert len(md) == 2 + 12
    assert all(len(split_row(line)) == 8 for line in md)
    kfold = next(line for line in md if "backbone_b5ns_kfold" in line)
    assert "5-fold 학습 \\| fold별 best checkpoint 앙상블" in kfold and "| 0.6412 | +0.0024 |" in kfold


def test_a_long_history_is_drawn_a_part_at_a_time_in_aligned_columns(seeded_db, monkeypatch):
    """Past HISTORY_TABLE_ROWS rows the table is drawn in parts with the first part's
    columns: one header, every run, each row's column rules where the first row has them."""
    from ledger.cli import analysis

    whole = ledger("history", env={"COLUMNS": "200"}).stdout
    monkeypatch.setattr(analysis, "HISTORY_TABLE_ROWS", 3)
    parted = ledger("history", env={"COLUMNS": "200"}).stdout
    names = [e["name"] for e in json.loads(ledger("history", "--json").stdout)]
    assert parted.count("Attributable") == 1 and len(names) > 3
    rows = [line for line in parted.splitlines() if "│" in line]
    run_column = "".join(line.split("│")[1].strip() for line in rows)  # names fold over lines
    assert all(name in run_column for name in names)
    rules = {tuple(i for i, c in enumerate(line) if c == "│") for line in rows}
    assert len(rules) == 1, parted
    monkeypatch.setattr(analysis, "HISTORY_TABLE_ROWS", len(names) + 1)
    assert ledger("history", env={"COLUMNS": "200"}).stdout == whole  # a short history: one table, as ever


def test_check_exits_1_on_errors(seeded_db):
    result = ledger("check", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["errors"], report["warnings"], len(report["findings"])) == (1, 7, 8)
    assert report["findings"][0] == {
        "run": "DeepLabV3_cosinelr_tmax_10_focal", "row": 2, "severity": "error", "code": "name-vs-arguments",
        "message": "the name says focal, but the arguments record criterion='cross_entropy': no focal loss",
    }
    table = ledger("check")
    assert table.exit_code == 1
    assert "run-name-shared" in table.stdout and table.stdout.strip().endswith("1 error, 7 warnings")


def test_check_passes_on_a_consistent_log(tmp_path):
    log = tmp_path / "log.md"
    log.write_text("| Run Name | Arguments | ETC |\n| --- | --- | --- |\n"
                   "| a_cutmix | cutmix=True, run_name='a_cutmix' | weight_decay 0.0001 |\n", encoding="utf-8")
    assert ledger("import", log).exit_code == 0
    result = ledger("check")
    assert result.exit_code == 0 and result.stdout.strip() == "0 errors, 0 warnings"
    assert json.loads(ledger("check", "--json").stdout) == {"findings": [], "errors": 0, "warnings": 0}


def test_set_then_export(seeded_db):
    result = ledger("set", NS, "--lb", "0.615", "--note", "resubmitted", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "run": NS, "changed": ["notes", "lb_miou"], "lb_miou": 0.615,
        "notes": "best LB score. resubmitted. lb mIoU : 0.615",
        "links": ["https://wandb.ai/pstage12/jaesub/runs/2tymft8i?workspace=user-shjas94"],
    }
    exported = ledger("export").stdout.splitlines()
    seed = SEED.read_text(encoding="utf-8").splitlines()
    assert [i for i, (a, b) in enumerate(zip(seed, exported)) if a != b] == [9]
    assert split_row(exported[9])[5] == "best LB score. resubmitted. lb mIoU : 0.615"
    shown = json.loads(ledger("show", NS, "--json").stdout)
    assert shown["lb_miou"] == 0.615

    quiet = ledger("set", NS, "--link", "https://wandb.ai/pstage12/jaesub/runs/new1")
    assert quiet.exit_code == 0 and quiet.stderr.strip() == f"{NS}: links updated"


def test_every_command_has_help_and_the_tolerance_default_is_stated():
    for command in ("compare", "history", "check", "set"):
        result = ledger(command, "--help")
        assert result.exit_code == 0 and "--db" in result.stdout
    assert "default 0.01" in ledger("compare", "--help").stdout
