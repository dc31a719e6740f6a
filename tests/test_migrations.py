"""Schema migrations: a ledger made by the first schema upgrades with nothing lost."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from ledger.db import HEAD_REVISION, MIGRATIONS, current_revision, make_engine, open_ledger, transaction, upgrade
from ledger.models import Base
from ledger.queries import get_run, run_details


def test_head_revision_constant_matches_the_scripts():
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def test_upgrade_from_first_schema_keeps_everything(db_url):
    engine = make_engine(db_url)
    upgrade(engine, "0001")
    assert current_revision(engine) == "0001"
    with engine.begin() as conn:
        assert "job_hash" not in {c["name"] for c in inspect(conn).get_columns("runs")}
        conn.execute(text(
            "INSERT INTO runs (id, position, name, date, model, args_raw, args, args_status, links, notes,"
            " lb_miou, kind, parent_id, status, created_at, updated_at, cells)"
            " VALUES (1, 1, 'base', '2021-05-02', 'DeepLabV3', 'lr=0.0001', '{\"lr\": 0.0001}', 'ok',"
            " '[\"https://wandb.ai/x\"]', '메모 [bold]', 0.61, 'logged', NULL, NULL, '2021-05-02 00:00:00',"
            " '2021-05-02 00:00:00', '{\"Run Name\": \"base\"}'),"
            " (2, 2, 'base_repro', '2026-11-28', 'DeepLabV3', NULL, NULL, 'none', '[]', NULL, NULL,"
            " 'reproduction', 1, 'finished', '2026-11-28 00:00:00', '2026-11-28 00:00:00', NULL)"
        ))
        conn.execute(text("INSERT INTO metrics (run_id, name, step, epoch, value) VALUES (2, 'Val mIoU', 0, 0, 0.42)"))
        conn.execute(text(
            "INSERT INTO documents (before, after, headers, aligns, aligned, newline, final_newline, updated_at)"
            " VALUES ('# log\n', '', '[\"Run Name\"]', '[\"---\"]', true, '\n', true, '2021-05-02 00:00:00')"
        ))
    engine.dispose()

    engine = open_ledger(db_url)  # opening an old ledger upgrades it in place
    assert current_revision(engine) == HEAD_REVISION
    with engine.connect() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns("runs")}
    assert set(Base.metadata.tables["runs"].columns.keys()) == columns
    with transaction(engine) as session:
        base = run_details(get_run(session, "base"))
        assert base["arguments"] == {"lr": 0.0001} and base["notes"] == "메모 [bold]" and base["lb_miou"] == 0.61
        assert base["links"] == ["https://wandb.ai/x"] and base["children"] == ["base_repro"]
        repro = run_details(get_run(session, "base_repro"))
        assert repro["parent"] == "base" and repro["status"] == "finished" and repro["job"] is None
        assert repro["metrics"] == {"Val mIoU": [{"step": 0, "epoch": 0, "value": 0.42}]}
    engine.dispose()


def test_models_match_migrated_schema(tmp_path: Path):
    engine = open_ledger(str(tmp_path / "fresh.db"), create=True)
    with engine.connect() as conn:
        inspector = inspect(conn)
        for name, table in Base.metadata.tables.items():
            assert {c["name"] for c in inspector.get_columns(name)} == set(table.columns.keys()), name
