"""`ledger plot`: PNGs of the log's scores and of per-epoch curves."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("matplotlib")

from conftest import cli  # noqa: E402
from ledger.store.db import open_ledger, transaction  # noqa: E402
from ledger.store.models import Metric, Run  # noqa: E402
from ledger.analysis.plots import change_label  # noqa: E402
from ledger.store.sql_reader import get_run  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def test_scores_plot_is_a_png(seeded_db, tmp_path):
    out = tmp_path / "scores.png"
    result = cli("plot", "-o", out)
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data.startswith(PNG) and len(data) > 20_000


def test_curves_plot_needs_series(seeded_db, tmp_path):
    engine = open_ledger(os.environ["LEDGER_DB"])
    with transaction(engine) as session:
        parent = get_run(session, "DeepLabV3_cosinelr")
        child = Run(name="r1", position=99, kind="reproduction", parent_id=parent.id, links=[], args_status="none",
                    status="finished")
        session.add(child)
        session.flush()
        for epoch, (miou, loss) in enumerate([(0.2, 1.5), (0.3, 1.1), (0.35, 0.9)], start=1):
            for name, value in (("val_miou", miou), ("lb_val_miou", miou + 0.1), ("train_loss", loss),
                                ("val_loss", loss + 0.2)):
                session.add(Metric(run_id=child.id, name=name, step=epoch, epoch=epoch, value=value))
    out = tmp_path / "curves.png"
    result = cli("plot", "r1", "-o", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(PNG)
    missing = cli("plot", "DeepLabV3_cosinelr", "-o", tmp_path / "x.png")
    assert missing.exit_code == 1 and "no per-epoch metrics for DeepLabV3_cosinelr" in missing.stderr
    assert not (tmp_path / "x.png").exists()


def test_point_labels_name_the_change(seeded_db):
    from ledger.analysis.history import history

    engine = open_ledger(os.environ["LEDGER_DB"])
    with transaction(engine) as session:
        labels = {e.name: change_label(e) for e in history(session) if e.kind != "reproduction"}
    assert labels["DeepLabV3_cosinelr"] == "first run"
    assert labels["Ensemble"] == "ensemble of runs"
    assert labels["DeepLabV3_cosinelr_tmax_10_backbone_ns_added_aug"].splitlines() == [
        "cutmix True→False", "flip 0→0.5", "wd 1e-06→0.0001"]
    assert labels["multiple_aug_with_multi_loss"].splitlines()[-1].startswith("(+")


def test_curves_ring_the_kept_checkpoint_and_a_dwarfing_loss_goes_log(seeded_db, tmp_path):
    from ledger.analysis.plots import plot_curves

    engine = open_ledger(os.environ["LEDGER_DB"])
    # Kept by the lowest val loss (the first code state's rule): epoch 2, not the best val mIoU's 3.
    curves = {"val_miou": [0.1, 0.3, 0.35], "lb_val_miou": [0.2, 0.4, 0.45], "train_loss": [48.0, 1.1, 0.9],
              "val_loss": [2.0, 0.8, 0.95]}
    with transaction(engine) as session:
        run = Run(name="diverged", position=99, kind="reproduction", links=[], args_status="none", status="finished",
                  job={"job": {"checkpoint_metric": "val_loss"}})
        session.add(run)
        session.flush()
        for name, values in curves.items():
            for epoch, value in enumerate(values, start=1):
                session.add(Metric(run_id=run.id, name=name, step=epoch, epoch=epoch, value=value))
    with transaction(engine, write=False) as session:
        drawn = plot_curves(session, ["diverged"], tmp_path / "c.png")
    assert drawn["checkpoint_epochs"] == {"diverged": 2}
    assert drawn["loss_scale"] == "log"
    assert (tmp_path / "c.png").read_bytes().startswith(PNG)

    with transaction(engine) as session:
        run = get_run(session, "diverged")
        run.job = {"job": {"checkpoint_metric": "val_miou"}}
        for metric in run.metrics:
            if metric.name == "train_loss" and metric.step == 1:
                metric.value = 1.5
    with transaction(engine, write=False) as session:
        drawn = plot_curves(session, ["diverged"], tmp_path / "c.png")
    assert drawn["checkpoint_epochs"] == {"diverged": 3} and drawn["loss_scale"] == "linear"
