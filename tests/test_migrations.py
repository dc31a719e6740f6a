"""Schema migrations: a ledger made by the first schema upgrades with nothing lost."""

from __future__ import annotations

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Float, inspect, text

from ledger.store.db import HEAD_REVISION, MIGRATIONS, current_revision, make_engine, open_ledger, transaction, upgrade
from ledger.store.models import Base
from ledger.store.shapes import run_details
from ledger.store.sql_reader import get_run


def _shape(column_type, nullable: bool) -> tuple:
    """What a column holds, in terms every dialect reflects alike: the generic type, its length
    where it has one, and whether it takes NULL (PostgreSQL reflects FLOAT as DOUBLE PRECISION)."""
    generic = column_type.as_generic()
    kind = "Float" if isinstance(generic, Float) else type(generic).__name__
    return kind, getattr(generic, "length", None), nullable


def migrated_columns(conn, table: str) -> dict[str, tuple]:
    return {c["name"]: _shape(c["type"], c["nullable"]) for c in inspect(conn).get_columns(table)}


def model_columns(table: str) -> dict[str, tuple]:
    return {c.name: _shape(c.type, c.nullable) for c in Base.metadata.tables[table].columns}


def test_shapes_tell_types_lengths_and_nullability_apart():
    from sqlalchemy import JSON, Column, DateTime, String, Text

    shapes = {_shape(Column("x", t).type, n) for t, n in ((String(16), True), (String(32), True), (Text(), True),
                                                          (JSON(), True), (DateTime(), True), (String(16), False))}
    assert len(shapes) == 6


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
            " 'reproduction', 1, 'finished', '2026-11-28 00:00:00', '2026-11-28 00:00:00', NULL),"
            " (3, 3, 'free', '2021.05.03', 'Unet', 'batch size=8<br>lr : 0.1', NULL, 'unparsed', '[]', NULL, NULL,"
            " 'logged', NULL, NULL, '2021-05-03 00:00:00', '2021-05-03 00:00:00', '{\"Run Name\": \"free\"}')"
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
        for table in Base.metadata.tables:
            assert migrated_columns(conn, table) == model_columns(table), table
    with transaction(engine) as session:
        base = run_details(get_run(session, "base"))
        assert base["arguments"] == {"lr": 0.0001} and base["notes"] == "메모 [bold]" and base["lb_miou"] == 0.61
        assert base["links"] == ["https://wandb.ai/x"] and base["children"] == ["base_repro"]
        repro = run_details(get_run(session, "base_repro"))
        assert repro["parent"] == "base" and repro["status"] == "finished" and repro["job"] is None
        assert repro["metrics"] == {"Val mIoU": [{"step": 0, "epoch": 0, "value": 0.42}]}
        # 0006: imported rows get their table's section, dates are read, free text is read loose.
        assert base["section"] == "log" and base["date_iso"] == "2021-05-02" and repro["section"] is None
        free = run_details(get_run(session, "free"))
        assert free["args_status"] == "loose" and free["arguments"] == {"batch_size": 8, "lr": 0.1}
        assert free["date_iso"] == "2021-05-03" and free["arguments_raw"] == "batch size=8<br>lr : 0.1"
    with transaction(engine) as session:
        from ledger.store.export import export_markdown

        assert export_markdown(session) == ("# log\n| Run Name   |\n| ---------- |\n| base       |\n"
                                            "| base_repro |\n| free       |\n")
    engine.dispose()


def test_models_match_migrated_schema(db_url):
    engine = open_ledger(db_url, create=True)
    with engine.connect() as conn:
        for table in Base.metadata.tables:
            assert migrated_columns(conn, table) == model_columns(table), table
    engine.dispose()


def test_0006_fills_every_row_of_a_ledger_bigger_than_its_batch(tmp_path):
    url = f"sqlite:///{tmp_path / 'big.db'}"
    engine = make_engine(url)
    upgrade(engine, "0005")
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO runs (id, position, name, date, args_raw, args_status, links, kind, created_at, updated_at)"
            " VALUES (:id, :id, :name, '2021.05.03', 'batch size=8', 'unparsed', '[]', 'logged',"
            " '2021-05-03 00:00:00', '2021-05-03 00:00:00')"),
            [{"id": i, "name": f"r{i}"} for i in range(1, 2502)])
    engine.dispose()
    engine = open_ledger(url)
    with engine.connect() as conn:
        filled = conn.execute(text("SELECT count(*) FROM runs WHERE date_iso = '2021-05-03' AND args_status = 'loose'"))
        assert filled.scalar() == 2501
    engine.dispose()
