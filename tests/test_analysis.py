"""compare, history, check and set on the seed ledger and on small hand-written logs."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import SEED, SEED_V2
from ledger.analysis.check import check_ledger
from ledger.analysis.compare import compare_runs
from ledger.analysis.history import history
from ledger.core.errors import LedgerError
from ledger.store.db import open_ledger, transaction
from ledger.store.export import export_markdown
from ledger.store.importer import import_file
from ledger.core.markdown import split_row
from ledger.store.models import Run
from ledger.store.edits import set_run
from ledger.store.jobrecord import row_input
from ledger.store.sql_reader import get_run
from reproduce.job import JOB_FIELDS, RUNTIME_FIELDS
from reproduce.resolve import resolve

NS = "DeepLabV3_cosinelr_tmax_10_backbone_ns"
MULTI = "multiple_aug_with_multi_loss"
ADDED_AUG = "DeepLabV3_cosinelr_tmax_10_backbone_ns_added_aug"
SMOOTH = "label_smoothing_dual_loss_histogram_equalization"
B5 = "backbone_b5ns_label_smoothong_normalization"


def load(engine, text: str, tmp_path: Path):
    log = tmp_path / "log.md"
    log.write_text(text, encoding="utf-8")
    with transaction(engine) as session:
        import_file(session, log)
    return engine


def table(*rows: str, header: str = "| Date | Run Name | Arguments | WanDB Link | ETC |") -> str:
    columns = header.count("|") - 1
    return "\n".join([header, "|" + " --- |" * columns, *rows]) + "\n"


ARGS = ("batch_size=8, criterion='cross_entropy', lr=0.0001, num_epochs=10, run_name='{name}', "
        "seed=42, weight_decay=1e-06")


def row(name: str, *, date: str = "2021-05-02", args: str = ARGS, link: str = "None", notes: str = "None",
        **values) -> str:
    text = args.format(name=name)
    for key, value in values.items():
        text += f", {key}={value!r}"
    return f"| {date} | {name} | {text} | {link} | {notes} |"


def add_reproduction(session, parent: str, name: str, *, val=None, lb_val=None, overrides=None,
                     environment=None, fingerprint=None, status="finished") -> Run:
    original = get_run(session, parent)
    resolved = resolve(row_input(original), overrides)
    position = session.scalar(select(func.max(Run.position))) + 1
    # As `ledger reproduce` records one: the original's arguments with the overrides.
    args = {**original.args, **(overrides or {})}
    run = Run(name=name, position=position, kind="reproduction", parent=original, status=status, val_miou=val,
              lb_val_miou=lb_val, job=resolved.to_dict(), job_hash=resolved.job.hash(), environment=environment,
              data_fingerprint=fingerprint, links=[], args=args, args_status="ok",
              notes=f"reproduction of {parent}")
    session.add(run)
    session.flush()
    return run


# --------------------------------------------------------------------- compare


def test_compare_backbone_ns_with_multiple_aug(seeded_engine):
    with transaction(seeded_engine) as session:
        cmp = compare_runs(session, [NS, MULTI]).to_dict()
    assert [(a["key"], a["values"], a["present"]) for a in cmp["arguments"]] == [
        ("criterion", ["cross_entropy", None], [True, False]),
        ("criterion1", [None, "cross_entropy"], [False, True]),
        ("criterion2", [None, "focal"], [False, True]),
        ("cutmix", [None, False], [False, True]),
        ("multi_loss", [None, True], [False, True]),
        ("num_epochs", [15, 20], [True, True]),
        ("run_name", ["DeepLabV3_cosinelr_tmax_10", MULTI], [True, True]),
        ("weight_decay", [1e-06, 0.0001], [True, True]),
    ]
    assert [(j["field"], j["values"], j["sources"]) for j in cmp["job"]] == [
        ("code_state", ["b204f67", "12e9e30"], ["code-state", "code-state"]),
        ("criterion2", [None, "focal"], ["default", "recorded"]),
        ("multi_loss", [False, True], ["default", "recorded"]),
        ("focal_gamma", [0.0, 0.75], ["code-state", "notes"]),
        ("weight_decay", [1e-06, 0.0001], ["recorded", "recorded"]),
        ("t_max", [10, 20], ["code-state", "code-state"]),
        ("hflip_p", [0.0, 0.3], ["code-state", "code-state"]),
        ("rotate_p", [0.0, 0.3], ["code-state", "code-state"]),
        ("brightness_contrast_p", [0.0, 0.3], ["code-state", "code-state"]),
        ("augment_mask", [True, False], ["code-state", "code-state"]),
        ("cutmix_prob", [0.0, 0.3], ["code-state", "code-state"]),
        ("num_epochs", [15, 20], ["recorded", "recorded"]),
    ]
    assert [(m["metric"], m["values"], m["deltas"]) for m in cmp["metrics"]] == [
        ("lb_miou", [None, 0.62], [None, None]),
        ("val_miou", [None, None], [None, None]),
        ("lb_val_miou", [None, None], [None, None]),
    ]
    assert cmp["environment"] == [] and cmp["data"] == [] and cmp["agreements"] == []
    assert [r["job_error"] for r in cmp["runs"]] == [None, None]


def test_compare_all_fields_and_lb_deltas(seeded_engine):
    with transaction(seeded_engine) as session:
        cmp = compare_runs(session, [ADDED_AUG, MULTI, SMOOTH], all_fields=True).to_dict()
    keys = [a["key"] for a in cmp["arguments"]]
    assert keys == sorted(keys) and "batch_size" in keys and "seed" in keys and "criterion" in keys
    assert [j["field"] for j in cmp["job"]] == list(JOB_FIELDS)
    lb = cmp["metrics"][0]
    assert lb["values"] == [0.6, 0.62, 0.61]
    assert lb["deltas"][0] is None and lb["deltas"][1:] == [pytest.approx(0.02), pytest.approx(0.01)]


def test_compare_names_a_row_that_cannot_be_resolved(seeded_engine):
    with transaction(seeded_engine) as session:
        cmp = compare_runs(session, [B5, "Ensemble"]).to_dict()
    assert cmp["runs"][1]["job_error"] == (
        "Ensemble has no recorded arguments (an ensemble of other runs' predictions): there is no training job to rebuild"
    )
    assert cmp["job"] == []  # nothing to differ from
    assert cmp["metrics"][0]["deltas"][1] == pytest.approx(0.6388 - 0.6293)


@pytest.mark.parametrize("names, message", [
    ([NS], "compare needs at least two runs"),
    ([NS, NS], f"{NS!r} is given twice"),
    ([NS, "multiple_aug"], "no run named 'multiple_aug'; did you mean multiple_aug_with_multi_loss?"),
])
def test_compare_user_errors(seeded_engine, names, message):
    with transaction(seeded_engine) as session, pytest.raises(LedgerError) as exc:
        compare_runs(session, names)
    assert str(exc.value) == message


ENV_A = {"python": "3.11.9", "torch": "2.14.1", "cuda": "12.8", "gpu": "NVIDIA H200", "git": {"commit": "abc", "dirty": False}}
ENV_B = {"python": "3.11.9", "torch": "2.14.1", "cuda": None, "gpu": None, "git": {"commit": "def", "dirty": True}}
DATA_A = {"splits": {"train.json": {"sha256": "aa", "images": 2617}, "val.json": {"sha256": "bb", "images": 655}},
          "total_images": 3272}
DATA_B = {"splits": {"train.json": {"sha256": "cc", "images": 12}, "val.json": {"sha256": "bb", "images": 655}},
          "total_images": 667}


def test_reproduction_against_its_original(seeded_engine):
    with transaction(seeded_engine) as session:
        get_run(session, MULTI).val_miou = 0.55
        add_reproduction(session, MULTI, "r_same", val=0.556, lb_val=0.61, environment=ENV_A, fingerprint=DATA_A)
        add_reproduction(session, MULTI, "r_demo", val=0.2, overrides={"num_epochs": 2, "image_size": 128},
                         environment=ENV_B, fingerprint=DATA_B)
    with transaction(seeded_engine) as session:
        cmp = compare_runs(session, [MULTI, "r_same", "r_demo"]).to_dict()
    same, demo = cmp["agreements"]
    assert same["agrees"] is True and same["same_job"] is True and same["original_hash"] == same["reproduction_hash"]
    assert same["metrics"] == [{"metric": "val_miou", "original": 0.55, "reproduction": 0.556,
                                "delta": pytest.approx(0.006), "within_tol": True}]
    assert same["overridden"] == [] and same["differing_fields"] == [] and same["same_data"] is None
    assert demo["agrees"] is False and demo["same_job"] is False
    assert demo["overridden"] == ["image_size", "num_epochs"] and demo["differing_fields"] == ["image_size", "num_epochs"]
    assert demo["metrics"][0]["within_tol"] is False
    # The original has no environment: differences are among the two reproductions.
    assert cmp["environment"] == [
        {"key": "cuda", "values": [None, "12.8", None]},
        {"key": "git.commit", "values": [None, "abc", "def"]},
        {"key": "git.dirty", "values": [None, False, True]},
        {"key": "gpu", "values": [None, "NVIDIA H200", None]},
    ]
    assert cmp["data"] == [
        {"key": "splits.train.json.images", "values": [None, 2617, 12]},
        {"key": "splits.train.json.sha256", "values": [None, "aa", "cc"]},
        {"key": "total_images", "values": [None, 3272, 667]},
    ]
    assert cmp["runs"][2]["overridden"] == ["image_size", "num_epochs"]

    with transaction(seeded_engine) as session:
        wide = compare_runs(session, [MULTI, "r_same"], tol=0.005).to_dict()
        siblings = compare_runs(session, ["r_same", "r_demo"]).to_dict()
    assert wide["agreements"][0]["agrees"] is False and wide["agreements"][0]["metrics"][0]["within_tol"] is False
    assert siblings["agreements"] == []
    assert siblings["data"][-1] == {"key": "total_images", "values": [3272, 667]}


def test_reproduction_without_a_score_on_both_cannot_be_told_to_agree(seeded_engine):
    with transaction(seeded_engine) as session:
        add_reproduction(session, NS, "ns_repro", val=0.5)  # the logged row has no val mIoU
    with transaction(seeded_engine) as session:
        (result,) = compare_runs(session, [NS, "ns_repro"]).agreements
    assert (result.agrees, result.same_job, result.metrics) == (None, True, [])


def _repeats(session, parent, values, start=0):
    for i, value in enumerate(values):
        add_reproduction(session, parent, f"{parent[:12]}_s{start + i}", val=value, overrides={"seed": 42 + i},
                         fingerprint=DATA_A)


def test_seed_repeats_mean_spread_and_whether_a_delta_exceeds_it(seeded_engine):
    with transaction(seeded_engine) as session:
        _repeats(session, ADDED_AUG, [0.50, 0.51, 0.52])
        _repeats(session, MULTI, [0.60, 0.61, 0.59])
        _repeats(session, SMOOTH, [0.605, 0.615])
        add_reproduction(session, MULTI, "multi_demo", val=0.1, overrides={"image_size": 128})
    with transaction(seeded_engine) as session:
        cmp = compare_runs(session, [ADDED_AUG, MULTI, SMOOTH]).to_dict()
    first, second, third = cmp["repeats"]
    assert (first["n"], first["mean"], first["std"]) == (3, pytest.approx(0.51), pytest.approx(0.01))
    assert second["runs"] == ["multiple_aug_s0", "multiple_aug_s1", "multiple_aug_s2"]  # not the demo run
    assert (third["n"], third["mean"], third["std"]) == (2, pytest.approx(0.61), pytest.approx(0.00707107))
    assert cmp["repeat_deltas"][0] is None
    assert cmp["repeat_deltas"][1] == {"delta": pytest.approx(0.09), "spread": pytest.approx(0.02), "exceeds": True}
    assert cmp["repeat_deltas"][2]["exceeds"] is True

    with transaction(seeded_engine) as session:
        own = compare_runs(session, [MULTI, "multiple_aug_s1"]).to_dict()
    assert own["repeats"][0] == own["repeats"][1] and own["repeat_deltas"] == [None, None]

    with transaction(seeded_engine) as session:
        entries = {e.name: e for e in history(session)}
    assert entries["multiple_aug_s1"].overrides == {"seed": 43} and entries["multi_demo"].overrides == {"image_size": 128}
    assert entries[MULTI].repeats["n"] == 3
    assert entries[MULTI].repeats_delta == {"delta": pytest.approx(0.09), "spread": pytest.approx(0.02), "exceeds": True}
    # 0.61 against 0.60: the move is within the spread of the repeats.
    assert entries[SMOOTH].repeats_delta == {"delta": pytest.approx(0.01), "spread": pytest.approx(0.01707107),
                                             "exceeds": False}
    assert entries[ADDED_AUG].repeats_delta is None  # the run before it has no repeats


# --------------------------------------------------------------------- history


def test_history_of_the_seed(seeded_engine):
    with transaction(seeded_engine) as session:
        entries = history(session)
    summary = [
        (e.name, e.previous, e.lb_miou, None if e.lb_delta is None else round(e.lb_delta, 4), e.changes, e.confounded,
         [c["key"] for c in e.argument_changes], [c["field"] for c in e.job_changes if not c["explained"]])
        for e in entries
    ]
    assert summary == [
        ("DeepLabV3_cosinelr", None, None, None, None, None, [], []),
        ("DeepLabV3_cosinelr_tmax_10_focal", "DeepLabV3_cosinelr", None, None, 3, True,
         ["lr", "weight_decay"], ["t_max"]),
        ("DeepLabV3_cosinelr_tmax_10_focal_gamma_0", "DeepLabV3_cosinelr_tmax_10_focal", None, None, 3, True,
         ["batch_size", "criterion", "val_batch_size"], []),
        (NS, "DeepLabV3_cosinelr_tmax_10_focal_gamma_0", None, None, 8, True,
         ["batch_size", "criterion", "num_epochs", "val_batch_size"],
         ["backbone", "encoder_weights", "scheduler_step", "checkpoint_metric"]),
        ("DeepLabV3_cosinelr_tmax_10_backbone_ns_cutmix", NS, None, None, 3, True,
         ["cutmix", "num_epochs"], ["cutmix_prob"]),
        (ADDED_AUG, "DeepLabV3_cosinelr_tmax_10_backbone_ns_cutmix", 0.6, None, 3, True,
         ["cutmix", "weight_decay"], ["hflip_p"]),
        (MULTI, ADDED_AUG, 0.62, 0.02, 11, True,
         ["criterion", "criterion1", "criterion2", "multi_loss"],
         ["focal_gamma", "t_max", "hflip_p", "rotate_p", "brightness_contrast_p", "augment_mask", "cutmix_prob"]),
        (SMOOTH, MULTI, 0.61, -0.01, 10, True, ["num_epochs"],
         ["backbone", "criterion1", "focal_gamma", "histogram_equalization", "hflip_p", "rotate_p",
          "brightness_contrast_p", "augment_mask", "log_lr"]),
        # Same arguments as the row before; everything that changed came from the code and the notes.
        (B5, SMOOTH, 0.6293, 0.0193, 7, True, [],
         ["multi_loss", "input_scale", "normalize_mean", "normalize_std", "histogram_equalization", "cutout_p",
          "clahe_p"]),
        ("Ensemble", None, 0.6388, 0.0095, None, None, [], []),
    ]
    by_name = {e.name: e for e in entries}
    assert by_name[MULTI].delta_from == ADDED_AUG and by_name["Ensemble"].delta_from == B5
    assert by_name[MULTI].code_state == {"before": "ff6cbeb", "after": "12e9e30"}
    assert by_name[B5].code_state is None
    assert by_name["Ensemble"].job_error.startswith("Ensemble has no recorded arguments")
    assert by_name[ADDED_AUG].notes.startswith("augmentation으로 RandomHorizontalFlip(p=0.5) 추가")
    explained = {c["field"]: c["explained"] for c in by_name[MULTI].job_changes}
    assert explained["criterion2"] is True and explained["multi_loss"] is True and explained["t_max"] is False


def test_history_one_change_is_attributable_and_reproductions_sit_under_their_run(engine, tmp_path):
    load(engine, table(
        row("a", notes="lb mIoU : 0.5"),
        row("b", args=ARGS.replace("lr=0.0001", "lr=0.0002"), notes="lr 0.0002. lb mIoU : 0.55"),
        row("c", args=ARGS.replace("lr=0.0001", "lr=0.0002").replace("num_epochs=10", "num_epochs=12")
            .replace("seed=42", "seed=1"), notes="lb mIoU : 0.56"),
    ), tmp_path)
    with transaction(engine) as session:
        add_reproduction(session, "a", "a_repro", val=0.4)
    with transaction(engine) as session:
        entries = history(session)
    assert [(e.name, e.depth, e.changes, e.confounded) for e in entries] == [
        ("a", 0, None, None), ("a_repro", 1, None, None), ("b", 0, 1, False), ("c", 0, 2, True),
    ]
    assert entries[1].val_miou == 0.4 and entries[1].parent == "a" and entries[1].overrides == {}
    assert entries[2].argument_changes == [{"key": "lr", "before": 0.0001, "after": 0.0002, "present": [True, True]}]
    assert entries[2].job_changes == [{"field": "lr", "before": 0.0001, "after": 0.0002,
                                       "sources": ["recorded", "recorded"], "explained": True}]
    assert entries[2].lb_delta == pytest.approx(0.05) and entries[2].delta_from == "a"


# ----------------------------------------------------------------------- check

SEED_FINDINGS = [
    (2, "DeepLabV3_cosinelr_tmax_10_focal", "error", "name-vs-arguments",
     "the name says focal, but the arguments record criterion='cross_entropy': no focal loss"),
    (2, "DeepLabV3_cosinelr_tmax_10_focal", "warning", "run-name-mismatch",
     "the arguments record run_name='DeepLabV3_cosinelr_tmax_10', not the row's name"),
    (4, NS, "warning", "run-name-mismatch",
     "the arguments record run_name='DeepLabV3_cosinelr_tmax_10', not the row's name"),
    (4, NS, "warning", "run-name-shared",
     "run_name='DeepLabV3_cosinelr_tmax_10' is also the run_name of row 2 (DeepLabV3_cosinelr_tmax_10_focal): "
     "their W&B runs share one name"),
    (8, SMOOTH, "warning", "notes-vs-arguments",
     "the notes say label smoothing ('label smoothing'); the name says label smoothing ('label_smoothing'); "
     "the arguments record criterion1='cross_entropy', criterion2='focal', multi_loss=True"),
    (9, B5, "warning", "notes-vs-arguments",
     "the notes say label smoothing ('label smoothing'); the name says label smoothing ('label_smoothong'); "
     "the notes say a single loss ('dual loss 대신'); the arguments record criterion1='cross_entropy', "
     "criterion2='focal', multi_loss=True (the arguments are the same as those of row 8 "
     f"({SMOOTH}): likely copied from it)"),
    (9, B5, "warning", "run-name-mismatch",
     f"the arguments record run_name='{SMOOTH}', not the row's name (it is the name of row 8 ({SMOOTH}))"),
    (9, B5, "warning", "run-name-shared",
     f"run_name='{SMOOTH}' is also the run_name of row 8 ({SMOOTH}): their W&B runs share one name"),
]


def findings(engine, **kw):
    with transaction(engine) as session:
        report = check_ledger(session, **kw)
    return [(f.row, f.run, f.severity, f.code, f.message) for f in report.findings]


def test_check_finds_every_contradiction_in_the_seed_and_nothing_else(seeded_engine):
    # By hand: row 2 is named focal but trained with cross entropy; rows 2 and 4 log the same
    # run_name, neither their own; rows 8 and 9 say label smoothing (9: instead of the dual
    # loss) while their arguments record cross_entropy + focal, and row 9's arguments are row
    # 8's, run_name included. Consistent and not reported: tmax_10 in the names of rows 2-6
    # (T_max 10 in their code), row 2's "tmax : 2 -> 10", row 3's focal gamma 0, row 5's
    # cutmix=True, row 6's "weight_decay 0.0001으로 변경" (row 5 had 1e-06) and its flip,
    # row 7's gamma=0.75 and p=0.3 augmentations, the dual/multi loss of rows 7 and 8.
    assert findings(seeded_engine) == SEED_FINDINGS
    with transaction(seeded_engine) as session:
        report = check_ledger(session)
    assert (report.errors, report.warnings) == (1, 7)


def test_check_on_the_corrected_log(seeded_engine):
    with transaction(seeded_engine) as session:
        import_file(session, SEED_V2)
    # The corrected row 9 no longer contradicts itself; the new rows have none.
    assert findings(seeded_engine) == SEED_FINDINGS[:5]


def test_check_names_the_arguments_deny(engine, tmp_path):
    load(engine, table(
        row("a_cutmix"),
        row("b_cutmix", cutmix=False),
        row("c_multi_loss"),
        row("d_tmax_20"),
        row("e_focal_gamma_2", args=ARGS.replace("'cross_entropy'", "'focal'")),
        row("f_cutmix_focal", date="2021-05-03", args=ARGS.replace("'cross_entropy'", "'focal'"), cutmix=True),
    ), tmp_path)
    assert findings(engine) == [
        (1, "a_cutmix", "error", "name-vs-arguments",
         "the name says cutmix, but the arguments record no cutmix (default False)"),
        (2, "b_cutmix", "error", "name-vs-arguments", "the name says cutmix, but the arguments record cutmix=False"),
        (3, "c_multi_loss", "error", "name-vs-arguments",
         "the name says a multi loss, but the arguments record criterion='cross_entropy'"),
        (4, "d_tmax_20", "warning", "name-vs-job",
         "the name says T_max 20, but the job's T_max is 10 (from the code state b204f67)"),
        (5, "e_focal_gamma_2", "warning", "name-vs-job",
         "the name says focal gamma 2, but the job's focal gamma is 0.0 (from the code state b204f67)"),
    ]


def test_check_notes_against_arguments_and_job(engine, tmp_path):
    load(engine, table(
        row("a"),
        row("b", notes="weight_decay 0.0001으로 변경"),  # the arguments say 1e-06
        row("c", notes="weight_decay 1e-06으로 변경"),  # a change the arguments do not show
        row("d", args=ARGS.replace("lr=0.0001", "lr=0.0002"), notes="lr : 0.0003 -> 0.0002"),
        row("e", args=ARGS.replace("lr=0.0001", "lr=0.0002"), notes="CosineAnnealingLR tmax : 2 -> 20"),
        row("f", args=ARGS.replace("lr=0.0001", "lr=0.0002"), notes="loss: focal(gamma=2)"),
        row("g", date="2021-05-04", args=ARGS.replace("criterion='cross_entropy'", "criterion1='cross_entropy', "
            "criterion2='focal', multi_loss=True"), notes="A.HorizontalFlip(p=0.5) 추가, A.Rotate(p=0.3) 추가"),
        row("h", notes="0.5*dice + 0.5*cross_entropy로 변경"),
        row("i", notes="RandomHorizontalFlip(p=0.5) 제거, weight_decay 1e-06, lb mIoU : 0.5"),
    ), tmp_path)
    assert findings(engine) == [
        (2, "b", "error", "notes-vs-arguments",
         "the notes say 'weight_decay 0.0001', but the arguments record weight_decay=1e-06"),
        (3, "c", "warning", "notes-vs-arguments",
         "the notes say 'weight_decay 1e-06' as a change, but the previous row 2 (b) already records weight_decay=1e-06"),
        (4, "d", "warning", "notes-vs-arguments",
         "the notes say 'lr : 0.0003 -> 0.0002', but the previous row 3 (c) records lr=0.0001"),
        (5, "e", "warning", "notes-vs-job",
         "the notes say 'tmax : 2 -> 20', but the job's T_max is 10 (from the code state b204f67)"),
        (6, "f", "error", "notes-vs-arguments",
         "the notes give focal 'gamma=2', but the arguments record no focal loss (criterion='cross_entropy')"),
        (7, "g", "warning", "notes-vs-job",
         "the notes say 'HorizontalFlip(p=0.5)', but the job's hflip_p is 0.3 (from the code state 12e9e30)"),
        (8, "h", "warning", "notes-vs-arguments",
         "the notes say a mix of two losses ('0.5*dice + 0.5*cross_entropy'); the arguments record "
         "criterion='cross_entropy'"),
    ]


def test_check_scores_against_an_lb_column(engine, tmp_path):
    header = "| Run Name | Arguments | LB | ETC |"
    args = ARGS.format(name="x")
    load(engine, table(
        f"| a | {args.replace('x', 'a')} | 0.6 | lb mIoU : 0.6 |",
        f"| b | {args.replace('x', 'b')} | 0.6 | lb mIoU : 0.61 달성 |",
        f"| c | {args.replace('x', 'c')} |  | lb mIoU : 0.62 |",
        f"| d | {args.replace('x', 'd')} | 0.63 | better |",
        header=header,
    ), tmp_path)
    assert findings(engine) == [
        (2, "b", "error", "score-mismatch", "the notes state an LB score of 0.61, but the 'LB' column says 0.6"),
        (3, "c", "warning", "score-missing", "the notes state an LB score of 0.62, but the 'LB' column is empty"),
    ]


def test_check_shared_links(engine, tmp_path):
    url = "https://wandb.ai/team/proj/runs/abc123"
    load(engine, table(
        row("a", link=f"[W&B]({url}?workspace=user-a)"),
        row("b", link=f"[W&B]({url})"),
        row("c", link="[W&B](https://wandb.ai/team/proj/runs/other)"),
    ), tmp_path)
    assert findings(engine) == [(2, "b", "error", "link-shared", f"the W&B link {url} is also on row 1 (a)")]


def test_check_reproductions_against_original_and_siblings(seeded_engine):
    with transaction(seeded_engine) as session:
        get_run(session, MULTI).val_miou = 0.55
        add_reproduction(session, MULTI, "r1", val=0.555)
        add_reproduction(session, MULTI, "r2", val=0.58, overrides={"seed": 43})
        add_reproduction(session, MULTI, "r_demo", val=0.1, overrides={"image_size": 128})  # another experiment
        add_reproduction(session, MULTI, "r_failed", status="failed")
        add_reproduction(session, SMOOTH, "s1", val=0.5)
        add_reproduction(session, SMOOTH, "s2", val=0.505)
        # Its original's contradictions (named focal, another run_name) are not reported again.
        add_reproduction(session, "DeepLabV3_cosinelr_tmax_10_focal", "DeepLabV3_cosinelr_tmax_10_focal_repro1",
                         val=0.3)
    extra = findings(seeded_engine)[len(SEED_FINDINGS):]
    assert extra == [
        (12, "r2", "warning", "reproduction-disagrees",
         f"val mIoU 0.5800 differs by +0.0300 from the original's 0.5500 (row 7 ({MULTI})), more than the tolerance 0.01"),
        (12, "r2", "warning", "repeats-disagree",
         "val mIoU 0.5800; its 2 sibling repeats range 0.5550..0.5800 (mean 0.5675), wider than the tolerance 0.01: r1, r2"),
    ]
    assert findings(seeded_engine, tol=0.05) == SEED_FINDINGS


def test_check_rejects_a_negative_tolerance(seeded_engine):
    with transaction(seeded_engine) as session, pytest.raises(LedgerError, match="--tol must be 0 or more"):
        check_ledger(session, tol=-1)


# ------------------------------------------------------------------------- set


def test_set_score_note_and_link_round_trip_through_export(seeded_engine, tmp_path):
    url = "https://wandb.ai/pstage12/jaesub/runs/zz99zz99"
    with transaction(seeded_engine) as session:
        result = set_run(session, NS, lb=0.615, note="resubmitted with TTA", link=url)
    assert result.changed == ["notes", "lb_miou", "links"]
    assert result.notes == "best LB score. resubmitted with TTA. lb mIoU : 0.615"
    with transaction(seeded_engine) as session:
        run = get_run(session, NS)
        assert run.lb_miou == 0.615 and run.links[-1] == url and len(run.links) == 2
        text = export_markdown(session)
    before, after = SEED.read_text(encoding="utf-8").splitlines(), text.splitlines()
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    assert len(before) == len(after)
    # Two links widen the link column, which re-pads the table as Prettier would; every
    # other row keeps its cells.
    assert all(split_row(before[i]) == split_row(after[i]) for i in changed if i not in (5, 9))
    cells = split_row(after[9])
    assert cells[1] == NS
    assert cells[4] == ("[WanDB_link](https://wandb.ai/pstage12/jaesub/runs/2tymft8i?workspace=user-shjas94)"
                        f"<br>[WanDB_link]({url})")
    assert cells[5] == "best LB score. resubmitted with TTA. lb mIoU : 0.615"

    out = tmp_path / "exported.md"
    out.write_text(text, encoding="utf-8")
    fresh = open_ledger(f"sqlite:///{tmp_path / 'fresh.db'}", create=True)
    with transaction(fresh) as session:
        import_file(session, out)
    with transaction(fresh) as session:
        again = get_run(session, NS)
        assert (again.lb_miou, again.notes, again.links) == (0.615, result.notes, result.links)
    fresh.dispose()


def test_set_changes_only_its_row_in_the_export(seeded_engine):
    with transaction(seeded_engine) as session:
        set_run(session, B5, note="재제출")
    before, after = SEED.read_text(encoding="utf-8").splitlines(), _export(seeded_engine).splitlines()
    assert [i for i, (a, b) in enumerate(zip(before, after)) if a != b] == [14]
    assert split_row(after[14])[5] == ("histogram equalization 제거 및 /255. 대신 normalization 적용, dual loss 대신 "
                                       "label smoothing loss 적용, augmentation에 cutout, clache 추가. lb mIoU : 0.6293 "
                                       "달성. 재제출")


def _export(engine) -> str:
    with transaction(engine) as session:
        return export_markdown(session)


def test_set_lb_already_in_the_notes_adds_no_text(seeded_engine):
    with transaction(seeded_engine) as session:
        result = set_run(session, MULTI, lb=0.62)
    assert result.changed == []
    assert _export(seeded_engine).encode("utf-8") == SEED.read_bytes()
    with transaction(seeded_engine) as session:
        result = set_run(session, "DeepLabV3_cosinelr", lb=0.55)
    assert result.changed == ["lb_miou", "notes"] and result.notes == "lb mIoU : 0.55"


def test_set_with_an_lb_column_writes_the_column_not_the_notes(engine, tmp_path):
    load(engine, table("| a | 0.5 | first |", "| b |  | second |", header="| Run Name | LB | ETC |"), tmp_path)
    with transaction(engine) as session:
        result = set_run(session, "b", lb=0.62)
    assert result.changed == ["lb_miou", "scores"] and result.notes == "second"  # the LB column is a score too
    with transaction(engine) as session:
        assert get_run(session, "b").scores == {"lb": 0.62}
    text = _export(engine)
    # A hand-written (not Prettier-aligned) table: the other lines are kept as written.
    assert text.splitlines()[2:] == ["| a | 0.5 | first |", "| b | 0.62 | second |"]


@pytest.mark.parametrize("kwargs, message", [
    ({}, "nothing to set: pass --lb, --clear-lb, --note, --notes, --clear-notes or --link"),
    ({"lb": 62.0}, "--lb must be an mIoU between 0 and 1, not 62.0"),
    ({"note": "  "}, "--note is empty"),
    ({"link": "wandb.ai/x"}, "--link must be a http(s) URL without spaces, brackets or '|', not 'wandb.ai/x'"),
    ({"link": "https://wandb.ai/pstage12/jaesub/runs/3l1vdffh"},
     "the link https://wandb.ai/pstage12/jaesub/runs/3l1vdffh is already on the run 'DeepLabV3_cosinelr'"),
])
def test_set_user_errors_change_nothing(seeded_engine, kwargs, message):
    with pytest.raises(LedgerError) as exc, transaction(seeded_engine) as session:
        set_run(session, MULTI, **kwargs)
    assert str(exc.value) == message
    assert _export(seeded_engine).encode("utf-8") == SEED.read_bytes()


def test_set_same_link_twice_is_a_no_op(seeded_engine):
    url = "https://wandb.ai/pstage12/jaesub/runs/3pc85tth?workspace=user-shjas94"
    with transaction(seeded_engine) as session:
        assert set_run(session, MULTI, link=url).changed == []


def test_runtime_fields_are_not_compared_without_all(seeded_engine):
    with transaction(seeded_engine) as session:
        cmp = compare_runs(session, [NS, MULTI]).to_dict()
    assert not {j["field"] for j in cmp["job"]} & RUNTIME_FIELDS
