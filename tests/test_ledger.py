"""The storage layer: import, merge, export and queries, on SQLite and (when
LEDGER_TEST_PG_URL is set) PostgreSQL alike."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from conftest import SEED, SEED_V2
from ledger.core.errors import LedgerError
from ledger.store.db import open_ledger, transaction
from ledger.store.export import export_flat, export_markdown, flat_records
from ledger.store.importer import import_file, import_markdown
from ledger.store.models import Document, Run
from ledger.store.sql_reader import get_run, list_runs

NAMES = [
    "DeepLabV3_cosinelr",
    "DeepLabV3_cosinelr_tmax_10_focal",
    "DeepLabV3_cosinelr_tmax_10_focal_gamma_0",
    "DeepLabV3_cosinelr_tmax_10_backbone_ns",
    "DeepLabV3_cosinelr_tmax_10_backbone_ns_cutmix",
    "DeepLabV3_cosinelr_tmax_10_backbone_ns_added_aug",
    "multiple_aug_with_multi_loss",
    "label_smoothing_dual_loss_histogram_equalization",
    "backbone_b5ns_label_smoothong_normalization",
    "Ensemble",
]


def dump(engine) -> list[dict]:
    """Everything the ledger holds about its runs and document, minus timestamps."""
    with transaction(engine) as session:
        runs = [
            {c: getattr(r, c) for c in Run.__table__.columns.keys() if c not in ("created_at", "updated_at", "id")}
            for r in session.scalars(select(Run).order_by(Run.position))
        ]
        docs = [
            {c: getattr(d, c) for c in Document.__table__.columns.keys() if c not in ("updated_at", "id")}
            for d in session.scalars(select(Document))
        ]
    return runs + docs


def export(engine, fmt: str = "md") -> str:
    with transaction(engine) as session:
        return export_markdown(session) if fmt == "md" else export_flat(session, fmt)


def test_seed_round_trips_byte_for_byte(seeded_engine):
    assert export(seeded_engine).encode("utf-8") == SEED.read_bytes()


def test_seed_rows_are_parsed(seeded_engine):
    with transaction(seeded_engine) as session:
        runs = list_runs(session)
        assert [r.name for r in runs] == NAMES
        first, ensemble = runs[0], runs[-1]
        assert first.args["lr"] == 5e-05 and first.args["batch_size"] == 8
        assert first.links == ["https://wandb.ai/pstage12/jaesub/runs/3l1vdffh?workspace=user-shjas94"]
        assert first.notes is None and first.kind == "logged"
        assert ensemble.kind == "ensemble" and ensemble.args_status == "none" and ensemble.links == []
        assert [r.lb_miou for r in runs] == [None, None, None, None, None, 0.6, 0.62, 0.61, 0.6293, 0.6388]
        assert runs[2].notes == "WanDB서버 오류로 로그는 7th epoch 까지만 있음"
        assert all(r.args_status == "ok" for r in runs[:-1])


def test_reimport_changes_nothing(seeded_engine):
    before = dump(seeded_engine)
    with transaction(seeded_engine) as session:
        report = import_file(session, SEED)
    assert report.added == [] and report.changed == [] and report.unchanged == NAMES
    assert dump(seeded_engine) == before


def test_updated_log_merges_and_keeps_identity(seeded_engine):
    with transaction(seeded_engine) as session:
        original = get_run(session, "backbone_b5ns_label_smoothong_normalization")
        original_id = original.id
        session.add(Run(name="repro_1", position=99, kind="reproduction", parent_id=original_id, links=[],
                        args_status="none", status="finished", val_miou=0.5))
    with transaction(seeded_engine) as session:
        report = import_file(session, SEED_V2)
    assert report.added == ["backbone_b5ns_kfold", "backbone_b5ns_tta"]
    assert report.changed == ["backbone_b5ns_label_smoothong_normalization"]
    assert len(report.unchanged) == 9 and report.layout == "replaced"
    with transaction(seeded_engine) as session:
        corrected = get_run(session, "backbone_b5ns_label_smoothong_normalization")
        assert corrected.id == original_id
        assert corrected.args["criterion1"] == "label_smoothing" and corrected.args["multi_loss"] is False
        child = get_run(session, "repro_1")
        assert child.parent_id == original_id and child.val_miou == 0.5
        kfold = get_run(session, "backbone_b5ns_kfold")
        assert len(kfold.links) == 5 and kfold.lb_miou == 0.6412
        assert "5-fold 학습 | fold별" in kfold.notes
        assert [r.name for r in list_runs(session)][-3:] == ["backbone_b5ns_kfold", "backbone_b5ns_tta", "repro_1"]
        session.delete(child)
    assert export(seeded_engine).encode("utf-8") == SEED_V2.read_bytes()


def test_partial_log_merges_rows_and_keeps_the_document(seeded_engine, tmp_path):
    partial = tmp_path / "partial.md"
    partial.write_text(
        "# other notes\n\n| Run Name | GPU | ETC |\n| --- | --- | --- |\n"
        "| Ensemble | V100 | 팀원들과의 앙상블. lb mIoU : 0.6388 달성 |\n"
        "| new_run | T4 | lb mIoU : 0.5 |\n",
        encoding="utf-8",
    )
    with transaction(seeded_engine) as session:
        report = import_file(session, partial)
    assert report.layout == "kept" and report.new_columns == ["GPU"]
    assert report.added == ["new_run"] and report.changed == ["Ensemble"]
    text = export(seeded_engine)
    assert text.startswith("# 한사랑개발회 허재섭 T1224 실험 기록\n")
    lines = text.splitlines()
    assert lines[4].split("|")[-2].strip() == "GPU"
    ensemble = next(line for line in lines if "| Ensemble " in line)
    assert "| V100 |" in ensemble and "0.6388" in ensemble
    assert "| new_run " in lines[-1] and "| T4 " in lines[-1]


def test_failed_import_writes_nothing(seeded_engine, tmp_path):
    before = dump(seeded_engine)
    duplicate = tmp_path / "dup.md"
    duplicate.write_text("| Run Name | ETC |\n| --- | --- |\n| brand_new | a |\n| brand_new | b |\n", encoding="utf-8")
    no_table = tmp_path / "prose.md"
    no_table.write_text("# just notes\n\nno table here\n", encoding="utf-8")
    nameless = tmp_path / "nameless.md"
    nameless.write_text("| Run Name | ETC |\n| --- | --- |\n| fine | a |\n|  | b |\n", encoding="utf-8")
    binary = tmp_path / "binary.md"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    for path, message in [(duplicate, "both name the run"), (no_table, "no table of runs"),
                          (nameless, "no run name"), (binary, "not UTF-8"), (tmp_path / "missing.md", "no such file")]:
        with pytest.raises(LedgerError, match=message):
            with transaction(seeded_engine) as session:
                import_file(session, path)
    assert dump(seeded_engine) == before


def test_filters_compile_to_bound_parameters(seeded_engine):
    with transaction(seeded_engine) as session:
        def names(*where, **kw):
            return [r.name for r in list_runs(session, where=list(where), **kw)]

        assert names("lr=5e-05") == ["DeepLabV3_cosinelr"]
        assert names("lb_miou>0.6") == NAMES[6:]
        assert names("lb>=0.6", "lb<0.62") == [NAMES[5], NAMES[7]]
        assert names("cutmix=True") == [NAMES[4]]
        assert names("cutmix=False", "weight_decay=0.0001") == NAMES[5:9]
        assert names("criterion~focal") == [NAMES[2]]
        assert names("args.batch_size<8") == [NAMES[2]]
        assert names("model=Ensemble") == ["Ensemble"]
        assert names("name~backbone_ns") == NAMES[3:6]
        assert names("name=x' OR '1'='1") == []
        assert names("run_name=\"DeepLabV3_cosinelr_tmax_10\"") == [NAMES[1], NAMES[3]]
        assert names(sort="-lb_miou", limit=2) == ["Ensemble", NAMES[8]]
        assert names(sort="num_epochs", limit=2) == NAMES[:2]
        assert names(sort="-num_epochs", limit=1) == [NAMES[7]]
        assert names(limit=3) == NAMES[-3:]
        with pytest.raises(LedgerError, match="KEY OP VALUE"):
            names("lr")
        with pytest.raises(LedgerError, match="is a number"):
            names("lb_miou>high")


def test_filters_read_numbers_as_text_for_contains_and_compare_times(seeded_engine):
    with transaction(seeded_engine) as session:
        def names(*where):
            return [r.name for r in list_runs(session, where=list(where))]

        assert names("lb_miou~0.62") == [NAMES[6], NAMES[8]]  # 0.62 and 0.6293
        assert names("created_at>2000-01-01") == NAMES
        assert names("created_at<=2000-01-01 12:00") == []
        with pytest.raises(LedgerError, match="date and time"):
            names("created_at>yesterday")
        with pytest.raises(LedgerError, match="only be compared with = or !="):
            names("status>None")


def test_unknown_run_suggests_close_names(seeded_engine):
    with transaction(seeded_engine) as session:
        with pytest.raises(LedgerError, match="did you mean DeepLabV3_cosinelr"):
            get_run(session, "DeepLabV3_cosinlr")


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_flat_export_imports_back(seeded_engine, engine, tmp_path, fmt, db_url):
    text = export(seeded_engine, fmt)
    path = tmp_path / f"runs.{fmt}"
    path.write_text(text, encoding="utf-8")
    if fmt == "csv":
        header = text.splitlines()[0].split(",")
        assert {"name", "lb_miou", "arguments", "args.lr", "args.criterion1", "args.cutmix"} <= set(header)
    else:
        assert json.loads(text)[0]["args.lr"] == 5e-05
    fresh = open_ledger(f"sqlite:///{tmp_path / 'fresh.db'}", create=True)
    with transaction(fresh) as session:
        report = import_file(session, path)
    assert report.added == NAMES

    def strip(records):
        return [{k: v for k, v in r.items() if k not in ("created_at", "updated_at")} for r in records]

    with transaction(seeded_engine) as a, transaction(fresh) as b:
        assert strip(flat_records(b)) == strip(flat_records(a))


def test_markdown_import_of_free_text_arguments_reads_them_loose_and_keeps_them_raw(engine):
    text = ("| Run Name | Arguments |\n| --- | --- |\n"
            "| odd | loss function=CrossEntropyLoss<br>optimizer=adam(lr=0.001) |\n")
    with transaction(engine) as session:
        import_markdown(session, text, source="odd.md")
    with transaction(engine) as session:
        run = get_run(session, "odd")
        assert run.args_status == "loose"
        assert run.args == {"loss_function": "CrossEntropyLoss", "optimizer": "adam(lr=0.001)"}
        assert run.args_raw == "loss function=CrossEntropyLoss<br>optimizer=adam(lr=0.001)"
    assert "optimizer=adam(lr=0.001)" in export(engine)
