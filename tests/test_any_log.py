"""Any team's log in, nothing lost (issue 7): logs shaped unlike the seed, each imported
through the CLI on SQLite and PostgreSQL, with the runs, names, sections, metrics and
argument keys they must give; export byte for byte; re-import changes nothing; the export
imported into an empty ledger gives the same runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import DATA, cli

LOGS = DATA / "logs"
THREE = LOGS / "three_tables.md"
FORMS = LOGS / "arg_forms.md"
PLAIN = LOGS / "plain_args.csv"
DATES = LOGS / "dates.md"

THREE_NAMES = [
    "Unet_efficientnet-b4_2021-05-03_1a2b3c4d",  # its W&B link's run id tells it apart
    "Unet_efficientnet-b4_2021-05-03",
    "Unet_efficientnet-b4_2021-05-03_2",  # looks like the row above; a suffix tells it apart
    "Unet++_efficientnet-b5_2021-05-04",
    "Unet++_resnext50_2021-05-05",
    "DeepLabV3_resnet101_2021-05-06_9z8y7x6w",
]


def ok(*args) -> str:
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


def runs(db: str, *args) -> list[dict]:
    return json.loads(ok("list", "--json", "--db", db, *args))


def names(db: str, *args) -> list[str]:
    return [r["name"] for r in runs(db, *args)]


def import_json(source: Path, db: str, *args) -> dict:
    return json.loads(ok("import", source, "--json", "--db", db, *args))


def essentials(db: str) -> list[tuple]:
    """What a run is, without where it was imported from: the facts a round trip keeps."""
    return [(r["name"], r["date"], r["model"], r["section"], r["scores"], r["arguments"], r["lb_miou"], r["notes"],
             r["links"]) for r in runs(db)]


def round_trips(source: Path, db: str, tmp_path: Path) -> None:
    """Export is the file byte for byte; importing it again changes nothing; importing the
    export into an empty ledger gives the same runs."""
    exported = tmp_path / ("again" + source.suffix)
    ok("export", "--db", db, "--output", exported, *(["--format", "csv"] if source.suffix == ".csv" else []))
    if source.suffix == ".md":
        assert exported.read_bytes() == source.read_bytes()
    again = import_json(source, db)
    assert again["added"] == [] and again["changed"] == []
    fresh = db.replace("param.db", "fresh.db") if db.startswith("sqlite") else None
    if fresh is None:
        pytest.skip("the empty-ledger round trip needs a second database; covered on SQLite")
    import_json(exported, fresh)
    assert essentials(fresh) == essentials(db)


def test_three_tables_without_run_names(db_url, tmp_path):
    report = import_json(THREE, db_url)
    assert report["added"] == THREE_NAMES
    tables = report["tables"]
    assert [(t["section"], len(t["runs"]), t["derived_names"]) for t in tables] == [
        ("Unet", 3, 3), ("Unet++", 2, 2), ("DeepLabV3", 1, 1)]
    assert [[s["why"] for s in t["skipped"]] for t in tables] == [["blank", "blank"], ["blank"], []]
    assert tables[0]["columns"]["mIoU(latest)"] == "score" and tables[0]["columns"]["Encoder"] == "kept"
    assert [t["arguments"] for t in tables] == [{"ok": 3}, {"ok": 2}, {"loose": 1}]
    assert [t["forms"] for t in tables] == [{"flags": 3}, {"json": 2}, {"lines": 1}]

    listed = runs(db_url)
    assert [r["section"] for r in listed] == ["Unet"] * 3 + ["Unet++"] * 2 + ["DeepLabV3"]
    assert [r["scores"]["miou_latest"] for r in listed] == [0.3712, 0.3655, 0.3811, 0.3904, 0.342, None]
    assert [r["scores"]["lb_score"] for r in listed] == [0.5811, None, None, 0.6012, None, 0.552]
    assert [r["lb_miou"] for r in listed] == [0.5811, None, None, 0.6012, None, 0.552]
    assert listed[0]["arguments"] == {"lr": 0.001, "epochs": 10}
    assert listed[3]["arguments"] == {"lr": 0.0003, "optimizer": "adamw"}
    assert listed[5]["arguments"] == {"loss_function": "CrossEntropyLoss", "batch_size": 10, "epoch": 10}

    shown = json.loads(ok("show", THREE_NAMES[1], "--json", "--db", db_url))
    assert shown["name_derived"] is True
    assert shown["score_kinds"] == {"miou_latest": "validation", "lb_score": "leaderboard"}
    assert shown["extra_columns"] == {"Encoder": "efficientnet-b4"}

    assert names(db_url, "--where", "section=Unet", "--sort", "-lb_score") == [THREE_NAMES[0], *THREE_NAMES[1:3]]
    assert names(db_url, "--where", "miou_latest>0.37") == [THREE_NAMES[0], THREE_NAMES[2], THREE_NAMES[3]]
    assert names(db_url, "--where", "lb_score=None") == [THREE_NAMES[1], THREE_NAMES[2], THREE_NAMES[4]]
    assert names(db_url, "--where", "optimizer=adam") == [THREE_NAMES[4]]
    assert names(db_url, "--sort", "-miou_latest", "--limit", "2") == [THREE_NAMES[3], THREE_NAMES[2]]
    round_trips(THREE, db_url, tmp_path)


def test_argument_cells_in_every_form_and_several_score_columns(db_url, tmp_path):
    report = import_json(FORMS, db_url)
    (table,) = report["tables"]
    assert table["section"] == "Detection runs"
    assert table["arguments"] == {"ok": 4, "loose": 1, "unparsed": 1, "none": 1}
    by_name = {r["name"]: r for r in runs(db_url)}
    assert by_name["yolo_base"]["arguments"] == {"img": 512, "batch": 16, "epochs": 30, "hyp": "hyp.scratch.yaml"}
    assert by_name["yolo_big"]["arguments"] == {"img": 1024, "b": 4, "epochs": 30, "multi_scale": True}
    assert by_name["frcnn"]["arguments"] == {"optimizer": "sgd", "lr": 0.02, "momentum": 0.9}
    assert by_name["frcnn_adam"]["arguments"] == {"optimizer": "adam", "lr": 1e-4}
    assert by_name["effdet"]["arguments"] == {"optimizer": "adamw(lr=1e-4, wd=0.01)", "epochs": 30}
    assert by_name["free"]["arguments"] is None
    assert by_name["name_only"]["arguments"] is None and by_name["name_only"]["model"] is None
    assert by_name["yolo_big"]["notes"] == "OOM at batch 8 | retried"
    assert by_name["yolo_base"]["scores"] == {"val_miou": 0.41, "dice": 0.52, "last_bbox_map50_val": 0.611,
                                              "lb_score_map50": 0.598}
    assert by_name["yolo_big"]["scores"]["lb_score_map50"] is None  # "no submission"
    assert by_name["frcnn"]["scores"]["dice"] is None  # "-"

    # A score named like a column is reached through scores.; the column stays the column.
    assert names(db_url, "--where", "scores.val_miou>0.42") == ["yolo_big"]
    assert names(db_url, "--sort", "-last_bbox_map50_val", "--limit", "2") == ["yolo_big", "yolo_base"]
    assert names(db_url, "--where", "epochs=30") == ["yolo_base", "yolo_big", "effdet"]
    shown = json.loads(ok("show", "free", "--json", "--db", db_url))
    assert shown["args_status"] == "unparsed" and shown["arguments_raw"] == "tried a bigger batch, it diverged"
    round_trips(FORMS, db_url, tmp_path)


def test_csv_argument_columns_become_arguments(db_url, tmp_path):
    report = import_json(PLAIN, db_url)
    assert report["tables"][0]["columns"] == {"name": "name", "lr": "argument", "batch_size": "argument",
                                              "optimizer": "argument", "lb": "lb", "comment": "notes"}
    listed = runs(db_url)
    assert [r["arguments"] for r in listed] == [
        {"lr": 0.001, "batch_size": 8, "optimizer": "adam"},
        {"lr": 0.0005, "batch_size": 8, "optimizer": "adam"},
        {"lr": 0.0005, "batch_size": 16, "optimizer": "sgd"},
    ]
    assert [r["lb_miou"] for r in listed] == [0.61, 0.63, None]
    assert [r["notes"] for r in listed] == ["first try", "lower lr, better", None]
    assert names(db_url, "--where", "batch_size=16") == ["r3"]

    # Its Markdown export has a column for every field that holds a value.
    markdown = ok("export", "--db", db_url)
    header = markdown.splitlines()[0]
    assert [h.strip() for h in header.strip("|").split("|")] == [
        "Date", "Run Name", "Model Name", "Arguments", "WanDB Link", "ETC", "lb"]
    assert "no submission" in markdown and "lr=0.0005" in markdown
    round_trips(PLAIN, db_url, tmp_path)

    md = tmp_path / "from_csv.md"
    md.write_text(markdown, encoding="utf-8")
    if db_url.startswith("sqlite"):
        other = db_url.replace("param.db", "from_md.db")
        import_json(md, other)
        assert [(r["name"], r["arguments"], r["lb_miou"], r["notes"]) for r in runs(other)] == \
            [(r["name"], r["arguments"], r["lb_miou"], r["notes"]) for r in listed]


def test_args_columns_keeps_the_other_columns_as_cells(db_url):
    report = import_json(PLAIN, db_url, "--args-columns", "lr,batch_size")
    assert report["tables"][0]["columns"]["optimizer"] == "kept"
    first = json.loads(ok("show", "r1", "--json", "--db", db_url))
    assert first["arguments"] == {"lr": 0.001, "batch_size": 8}
    assert first["extra_columns"] == {"optimizer": "adam"}
    assert "| optimizer" in ok("export", "--db", db_url)


def test_dates_in_other_forms_compare_as_dates(db_url, tmp_path):
    report = import_json(DATES, db_url)
    assert report["tables"][0]["unread_dates"] == ["May 7th"]
    assert names(db_url, "--where", "date>=2021-05-01") == ["dotted", "slashed", "iso"]
    assert names(db_url, "--where", "date<2021.05.04") == ["dotted", "april"]
    assert names(db_url, "--where", "date=2021-05-04") == ["slashed"]
    assert names(db_url, "--where", "date~May") == ["words"]  # ~ looks in the text as written
    assert names(db_url, "--sort", "date", "--limit", "2") == ["april", "dotted"]
    assert [r["date"] for r in runs(db_url)] == ["2021.05.03", "2021/5/4", "2021-05-06", "May 7th", "2021-04-28"]
    result = cli("list", "--db", db_url, "--where", "date>yesterday")
    assert result.exit_code == 1 and "is a date" in result.stderr
    round_trips(DATES, db_url, tmp_path)


def test_name_column_names_the_runs(tmp_path):
    db = f"sqlite:///{tmp_path / 'n.db'}"
    log = tmp_path / "ids.md"
    log.write_text("| ID | Model | LB |\n| --- | --- | --- |\n| exp-7 | Unet | 0.5 |\n| exp-8 | Unet | 0.6 |\n",
                   encoding="utf-8")
    assert import_json(log, db, "--name-column", "ID")["added"] == ["exp-7", "exp-8"]
    assert ok("export", "--db", db) == log.read_text(encoding="utf-8")
    result = cli("import", log, "--db", f"sqlite:///{tmp_path / 'm.db'}", "--name-column", "Nope")
    assert result.exit_code == 1 and "Nope" in result.stderr and not (tmp_path / "m.db").exists()


def test_derived_names_are_stable_when_rows_are_added(tmp_path):
    db = f"sqlite:///{tmp_path / 's.db'}"
    import_json(THREE, db)
    grown = tmp_path / "grown.md"
    text = THREE.read_text(encoding="utf-8")
    new_row = "| 2021-05-07 | DeepLabV3 | resnet50 | --lr 0.01 |  | 0.33 | 0.50 |\n"
    grown.write_text(text.replace("\n\n| Legend", "\n" + new_row + "\n| Legend"), encoding="utf-8")
    report = import_json(grown, db)
    assert report["added"] == ["DeepLabV3_resnet50_2021-05-07"]
    assert sorted(report["unchanged"]) == sorted(THREE_NAMES)
    assert ok("export", "--db", db) == grown.read_text(encoding="utf-8")


def state(db_file: Path) -> str:
    """Everything the ledger holds, as SQL (the file's bytes move when SQLite checkpoints its log)."""
    import sqlite3

    with sqlite3.connect(db_file) as conn:
        return "\n".join(conn.iterdump())


@pytest.mark.parametrize("content, message", [
    ("# Notes\n\n| Legend | Meaning |\n|---|---|\n| a | b |\n", "no table of runs"),
    ("| Run Name | LB |\n| --- | --- |\n| a | 0.5 | extra |\n", "cells but the header has 2"),
    ("| Model | Date | LB |\n| --- | --- | --- |\n| Unet | 2021-05-03 | 0.5 |\n| Unet | 2021-05-03 | 0.5 |\n",
     "cannot be told apart"),
    ("| Run Name | LB |\n| --- | --- |\n| a | 0.5 |\n| a | 0.6 |\n", "both name the run 'a'"),
    ("| Run Name | Notes |\n| --- | --- |\n| a | " + "x" * 1_000_001 + " |\n", "at most 1,000,000"),
    ("| Run Name | " + " | ".join(f"c{i}" for i in range(600)) + " |\n|" + " --- |" * 601 + "\n", "at most 500"),
    (b"| Run Name |\n| --- |\n| \xff\xfe |\n", "not UTF-8"),
])
def test_bad_input_fails_cleanly_and_leaves_the_ledger_as_it_was(tmp_path, content, message):
    db_file = tmp_path / "kept.db"
    ok("import", THREE, "--db", db_file)
    before = state(db_file)
    bad = tmp_path / "bad.md"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    for target in (db_file, tmp_path / "new.db"):
        result = cli("import", bad, "--db", target)
        assert result.exit_code == 1, result.output
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert state(db_file) == before
    assert not (tmp_path / "new.db").exists()


def test_dry_run_writes_nothing_at_all(tmp_path):
    db_file = tmp_path / "never.db"
    result = cli("import", THREE, "--dry-run", "--db", db_file)
    assert result.exit_code == 0 and "would import" in result.stderr
    assert list(tmp_path.iterdir()) == []
    ok("import", PLAIN, "--db", db_file)
    before = state(db_file)
    assert cli("import", THREE, "--dry-run", "--db", db_file).exit_code == 0
    assert state(db_file) == before and len(runs(str(db_file))) == 3


def test_setting_a_score_writes_the_lb_column_of_the_runs_own_table(tmp_path):
    db = f"sqlite:///{tmp_path / 'e.db'}"
    import_json(THREE, db)
    ok("set", THREE_NAMES[4], "--lb", "0.59", "--db", db)
    shown = json.loads(ok("show", THREE_NAMES[4], "--json", "--db", db))
    assert shown["lb_miou"] == 0.59 and shown["scores"]["lb_score"] == 0.59
    assert names(db, "--where", "lb_score>0.58", "--where", "section=Unet++") == [THREE_NAMES[3], THREE_NAMES[4]]
    lines = ok("export", "--db", db).splitlines()
    changed = [a for a, b in zip(lines, THREE.read_text(encoding="utf-8").splitlines()) if a != b]
    assert len(changed) == 1 and "resnext50" in changed[0] and "0.59" in changed[0]


def test_json_of_another_tool_keeps_every_value(tmp_path):
    records = [{"experiment": "a", "config": {"lr": 0.1, "layers": [1, 2]}, "val mIoU": 0.41, "seed": 3},
               {"experiment": "b", "config": {"lr": 0.2}, "val mIoU": "no submission", "seed": 4}]
    source = tmp_path / "tool.json"
    source.write_text(json.dumps(records), encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'j.db'}"
    report = import_json(source, db)
    assert report["tables"][0]["columns"] == {"experiment": "name", "config": "args", "val mIoU": "score",
                                              "seed": "argument"}
    listed = runs(db)
    assert [r["arguments"] for r in listed] == [{"lr": 0.1, "layers": [1, 2], "seed": 3}, {"lr": 0.2, "seed": 4}]
    assert [r["scores"] for r in listed] == [{"val_miou": 0.41}, {"val_miou": None}]
    markdown = ok("export", "--db", db)
    assert "seed=3" in markdown and "layers=[1, 2]" in markdown and "no submission" in markdown
    assert import_json(source, db)["unchanged"] == ["a", "b"]
    result = cli("reproduce", "a", "--dry-run", "--db", db)
    assert result.exit_code == 1 and "separate values" in result.stderr


def test_history_and_plot_follow_a_score_column(tmp_path):
    db = f"sqlite:///{tmp_path / 'h.db'}"
    import_json(THREE, db)
    entries = json.loads(ok("history", "--json", "--db", db))
    assert [e["section"] for e in entries] == ["Unet"] * 3 + ["Unet++"] * 2 + ["DeepLabV3"]
    deltas = [e["score_deltas"] for e in entries]
    assert deltas[0] == {} and deltas[1]["miou_latest"] == pytest.approx(0.3655 - 0.3712)
    assert deltas[3]["lb_score"] == pytest.approx(0.6012 - 0.5811)  # against the last run with a number
    assert deltas[5] == {"lb_score": pytest.approx(0.552 - 0.6012)}  # its miou_latest is N/A
    assert [c["key"] for c in entries[2]["argument_changes"]] == ["epochs"]
    table = ok("history", "--metric", "miou_latest", "--format", "md", "--db", db)
    assert "| Δ miou_latest |" in table and "-0.0057" in table
    result = cli("history", "--metric", "dice", "--db", db)
    assert result.exit_code == 1 and "miou_latest, lb_score" in result.stderr

    pytest.importorskip("matplotlib")
    from ledger.analysis.plots import plot_scores
    from ledger.store.db import open_ledger, transaction

    with transaction(open_ledger(db, read_only=True), write=False) as session:
        drawn = plot_scores(session, tmp_path / "m.png", "miou_latest")
    assert [p["miou_latest"] for p in drawn["points"]] == [0.3712, 0.3655, 0.3811, 0.3904, 0.342]
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


def test_check_reads_each_tables_own_lb_column(tmp_path):
    log = tmp_path / "two.md"
    log.write_text("## A\n\n| Run Name | ETC |\n| --- | --- |\n| a1 | lb mIoU : 0.5 |\n\n"
                   "## B\n\n| Run Name | LB score | ETC |\n| --- | --- | --- |\n| b1 | 0.6 | lb mIoU : 0.7 |\n"
                   "| b2 | 0.6 | lb mIoU : 0.6 |\n", encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'c.db'}"
    import_json(log, db)
    result = cli("check", "--json", "--db", db)
    findings = json.loads(result.stdout)["findings"]
    assert [(f["run"], f["code"]) for f in findings] == [("b1", "score-mismatch")]
    assert "'LB score' column says 0.6" in findings[0]["message"]
