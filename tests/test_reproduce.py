"""`ledger reproduce` end to end on a tiny synthetic data set, with the real architecture
of a logged row (tf_efficientnet_b5_ns DeepLabV3) at 64x64 on the CPU."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from conftest import SEED, cli  # noqa: E402

pytestmark = pytest.mark.slow
RUN = "backbone_b5ns_label_smoothong_normalization"
TINY = ["--set", "image_size=64", "--set", "num_epochs=2", "--set", "batch_size=2", "--set", "val_batch_size=2",
        "--set", "num_workers=0", "--no-pretrained", "--wandb", "offline"]
ledger = cli


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    from reproduce.demo import make_demo_dataset

    return make_demo_dataset(tmp_path_factory.mktemp("tiny"), n_train=8, n_val=4, n_test=2, size=64)


def details(name: str) -> dict:
    result = ledger("show", name, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def series(d: dict) -> dict:
    return {k: [p["value"] for p in v] for k, v in d["metrics"].items()}


def test_reproduce_appends_a_finished_row(seeded_db, tiny_data):
    result = ledger("reproduce", RUN, "--data", tiny_data, *TINY, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    name = f"{RUN}_repro1"
    assert summary["name"] == name and len(summary["epochs"]) == 2
    # "Best" is the maximum over the epochs; the checkpoint is the one the job's rule kept.
    best = max(summary["epochs"], key=lambda e: e["val_miou"])
    assert (summary["val_miou"], summary["best_epoch"]) == (best["val_miou"], best["epoch"])
    assert summary["checkpoint_rule"] in ("lowest val loss", "highest val mIoU")
    kept = next(e for e in summary["epochs"] if e["epoch"] == summary["checkpoint_epoch"])
    assert summary["checkpoint_val_miou"] == kept["val_miou"]
    # Background-only: background's IoU (under 1) shared among the classes the set holds (several).
    assert 0.02 < summary["background_val_miou"] < 0.5 and 0.0 < summary["background_lb_val_miou"] < 1.0

    runs = json.loads(ledger("list", "--json").stdout)
    assert runs[-1]["name"] == name and runs[-1]["parent"] == RUN and runs[-1]["status"] == "finished"
    d = details(name)
    assert d["kind"] == "reproduction" and d["status"] == "finished" and d["date"]
    assert d["arguments"]["image_size"] == 64 and d["arguments"]["criterion1"] == "cross_entropy"
    assert d["job"]["job"]["backbone"] == "tf_efficientnet_b5_ns" and d["job"]["hash"] == d["job_hash"]
    assert d["job"]["provenance"]["num_epochs"]["source"] == "override"
    assert {"python", "torch", "libraries", "git", "gpu"} <= set(d["environment"])
    assert d["environment"]["libraries"]["timm"]
    assert d["data_fingerprint"]["splits"]["train.json"]["images"] == 8
    values = series(d)
    assert set(values) == {"train_loss", "val_loss", "val_miou", "lb_val_miou", "lr"}
    assert len(values["val_miou"]) == 2 and d["val_miou"] == max(values["val_miou"])
    assert d["lb_val_miou"] is not None and d["duration_s"] > 0
    assert Path(d["checkpoint_path"]).is_file()

    [link] = d["links"]
    assert list(Path(link).glob("run-*.wandb")), "W&B offline files were not written"

    run_dir = Path(d["checkpoint_path"]).parent
    import yaml

    assert yaml.safe_load((run_dir / "args.yaml").read_text())["backbone"] == "tf_efficientnet_b5_ns"
    assert json.loads((run_dir / "job.json").read_text())["hash"] == d["job_hash"]
    with open(run_dir / "submission.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    test_images = json.loads((tiny_data / "test.json").read_text())["images"]
    assert [r["image_id"] for r in rows] == [img["file_name"] for img in sorted(test_images, key=lambda i: i["id"])]
    assert all(len(r["PredictionString"].split()) == 256 * 256 for r in rows)

    exported = ledger("export").stdout
    assert exported.startswith(SEED.read_text(encoding="utf-8").split("| 2021-04-30")[0][:20])
    assert f"| {name} " in exported and "reproduction of " in exported


def test_dry_run_and_refusals_append_nothing(seeded_db, tiny_data):
    result = ledger("reproduce", RUN, "--dry-run", "--json", "--data", "demo")
    job = json.loads(result.stdout)
    assert job["job"]["image_size"] == 128 and job["provenance"]["image_size"]["source"] == "override"
    assert "source" in ledger("reproduce", RUN, "--dry-run").stdout
    ensemble = ledger("reproduce", "Ensemble", "--data", tiny_data)
    assert ensemble.exit_code == 1 and "no recorded arguments" in ensemble.stderr
    missing = ledger("reproduce", RUN, "--data", tiny_data / "nope", *TINY)
    assert missing.exit_code == 1 and "does not exist" in missing.stderr
    unknown = ledger("reproduce", RUN, "--data", tiny_data, "--set", "epochs_total=3")
    assert unknown.exit_code == 1 and "known keys" in unknown.stderr
    no_data = ledger("reproduce", RUN)
    assert no_data.exit_code == 1 and "--data demo" in no_data.stderr
    assert len(json.loads(ledger("list", "--json").stdout)) == 10


def test_pretrained_weights_offline_is_a_clear_error(seeded_db, tiny_data):
    args = [a for a in TINY if a != "--no-pretrained"]
    result = ledger("reproduce", RUN, "--data", tiny_data, *args)
    assert result.exit_code == 1
    assert "--weights PATH or --no-pretrained" in result.stderr and "Traceback" not in result.output
    assert len(json.loads(ledger("list", "--json").stdout)) == 10


def test_interrupted_run_resumes_to_the_same_metrics(seeded_db, tiny_data, monkeypatch):
    from reproduce.progress import ProgressDisplay

    reference = ledger("reproduce", RUN, "--data", tiny_data, *TINY, "--name", "uninterrupted")
    assert reference.exit_code == 0, reference.output
    again = ledger("reproduce", RUN, "--data", tiny_data, *TINY, "--name", "again", "--keep-last")
    assert again.exit_code == 0
    assert series(details("again")) == series(details("uninterrupted")), "two CPU runs of one job differ"
    assert "agrees with uninterrupted (the same job): identical metrics, every epoch" in again.stderr
    # A finished run keeps its best checkpoint; the state to resume from goes unless asked for.
    for name, kept in (("uninterrupted", False), ("again", True)):
        run_dir = Path(details(name)["checkpoint_path"]).parent
        assert (run_dir / "best.pt").is_file() and (run_dir / "last.pt").exists() == kept
    assert "run folder" in reference.stderr and "MiB" in reference.stderr
    # The score of the trivial all-background prediction is printed beside the run's own.
    assert "predicting background everywhere scores val mIoU" in reference.stderr

    original_on_epoch = ProgressDisplay.on_epoch

    def stop_after_first(self, result):
        original_on_epoch(self, result)
        raise KeyboardInterrupt

    monkeypatch.setattr(ProgressDisplay, "on_epoch", stop_after_first)
    stopped = ledger("reproduce", RUN, "--data", tiny_data, *TINY, "--name", "stopped")
    assert stopped.exit_code == 130 and "--resume" in stopped.stderr
    d = details("stopped")
    assert d["status"] == "interrupted" and len(series(d)["val_miou"]) == 1
    monkeypatch.setattr(ProgressDisplay, "on_epoch", original_on_epoch)

    resumed = ledger("reproduce", "stopped", "--resume", "--wandb", "offline")
    assert resumed.exit_code == 0, resumed.output
    d = details("stopped")
    assert d["status"] == "finished"
    assert series(d) == series(details("uninterrupted"))
    assert "agrees with uninterrupted (the same job): identical metrics" in resumed.stderr
    assert d["val_miou"] == details("uninterrupted")["val_miou"]
    # Stopped before the first checkpoint: --resume starts it again on the same row, same job.
    original_on_batch = ProgressDisplay.on_batch

    def stop_at_once(self, loss, images):
        raise KeyboardInterrupt

    monkeypatch.setattr(ProgressDisplay, "on_batch", stop_at_once)
    early = ledger("reproduce", RUN, "--data", tiny_data, *TINY, "--name", "early")
    assert early.exit_code == 130 and details("early")["metrics"] == {}
    monkeypatch.setattr(ProgressDisplay, "on_batch", original_on_batch)
    restarted = ledger("reproduce", "early", "--resume", "--wandb", "offline")
    assert restarted.exit_code == 0, restarted.output
    assert "restarting early from epoch 1" in restarted.stderr
    assert details("early")["status"] == "finished" and series(details("early")) == series(details("uninterrupted"))

    finished = ledger("reproduce", "stopped", "--resume")
    assert finished.exit_code == 1 and "already finished" in finished.stderr


def test_a_crash_is_recorded_as_failed(seeded_db, tiny_data, monkeypatch):
    import reproduce.train

    def broken(*args, **kwargs):
        raise RuntimeError("validation exploded")

    monkeypatch.setattr(reproduce.train, "evaluate", broken)
    result = ledger("reproduce", RUN, "--data", tiny_data, *TINY, "--name", "crashes")
    assert result.exit_code == 1 and "validation exploded" in result.stderr and "Traceback" not in result.output
    d = details("crashes")
    assert d["status"] == "failed" and "validation exploded" in d["error"]


def test_too_little_disk_for_the_checkpoints_appends_nothing(seeded_db, tiny_data, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(1 << 30, (1 << 30) - (10 << 20), 10 << 20))
    before = len(json.loads(ledger("list", "--json").stdout))
    result = ledger("reproduce", RUN, "--data", tiny_data, *TINY, "--name", "no_room")
    assert result.exit_code == 1 and "not enough free disk" in result.stderr and "10.0 MiB free" in result.stderr
    assert len(json.loads(ledger("list", "--json").stdout)) == before


def test_a_failure_after_the_row_is_appended_leaves_it_failed(seeded_db, tiny_data, monkeypatch):
    import reproduce.runfiles

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(reproduce.runfiles, "write_job_files", disk_full)
    result = ledger("reproduce", RUN, "--data", tiny_data, *TINY, "--name", "no_space")
    assert result.exit_code == 1 and "No space left on device" in result.stderr and "Traceback" not in result.output
    d = details("no_space")
    assert d["status"] == "failed" and "No space left on device" in d["error"]


ONE_EPOCH = [a if a != "num_epochs=2" else "num_epochs=1" for a in TINY]


def test_run_from_a_row_appends_a_new_logged_run(seeded_db, tiny_data):
    result = ledger("run", "--from", "multiple_aug_with_multi_loss", "--data", tiny_data, *ONE_EPOCH,
                    "--set", "lr=0.0002", "--name", "lr_2e-4", "--json")
    assert result.exit_code == 0, result.output
    d = details("lr_2e-4")
    assert d["kind"] == "logged" and d["parent"] is None and d["status"] == "finished"
    assert d["job"]["forked_from"] == "multiple_aug_with_multi_loss"
    assert d["job"]["job"]["lr"] == 0.0002 and d["job"]["job"]["focal_gamma"] == 0.75
    assert d["arguments"]["lr"] == 0.0002 and "forked from multiple_aug_with_multi_loss" in d["notes"]
    # Its identity is its own, never the parent's: name, W&B name and group, model, W&B project.
    assert d["arguments"]["run_name"] == "lr_2e-4" and d["job"]["job"]["wandb_name"] == "lr_2e-4"
    assert d["job"]["job"]["wandb_group"] == "DeepLabV3" and d["model"] == "DeepLabV3"
    assert d["job"]["wandb_project"] == "ledger" and d["job"].get("wandb_entity") is None
    unet = ledger("run", "--from", "DeepLabV3_cosinelr", "--data", tiny_data, *ONE_EPOCH, "--set", "model=Unet",
                  "--set", "backbone=resnet18", "--name", "unet_demo", "--wandb-project", "seg-team")
    assert unet.exit_code == 0, unet.output
    u = details("unet_demo")
    assert u["model"] == "Unet" and u["arguments"]["run_name"] == "unet_demo"
    assert (u["job"]["job"]["wandb_name"], u["job"]["job"]["wandb_group"]) == ("unet_demo", "Unet")
    assert u["job"]["wandb_project"] == "seg-team"
    assert [r["name"] for r in json.loads(ledger("list", "--where", "model=Unet", "--json").stdout)] == ["unet_demo"]
    shared = [f for f in json.loads(ledger("check", "--json").stdout)["findings"] if "unet_demo" in str(f)]
    assert not [f for f in shared if "W&B" in f.get("message", "") or "wandb" in f.get("code", "")], shared
    again = ledger("run", "--from", "lr_2e-4", "--dry-run", "--json", "--set", "lr=0.0003")
    job = json.loads(again.stdout)
    assert job["job"]["lr"] == 0.0003 and job["job"]["image_size"] == 64, "a fork keeps its stored job"


def test_repeats_are_siblings_on_consecutive_seeds(seeded_db, tiny_data):
    result = ledger("reproduce", RUN, "--data", tiny_data, *ONE_EPOCH, "--repeats", "2", "--json")
    assert result.exit_code == 0, result.output
    names = [s["name"] for s in json.loads(result.stdout)]
    assert names == [f"{RUN}_repro1", f"{RUN}_repro2"]
    first, second = details(names[0]), details(names[1])
    assert (first["job"]["job"]["seed"], second["job"]["job"]["seed"]) == (42, 43)
    assert first["job"]["provenance"]["seed"]["source"] == "recorded"
    assert first["parent"] == second["parent"] == RUN
    bad = ledger("reproduce", RUN, "--data", tiny_data, "--repeats", "2", "--seeds", "1,2,3")
    assert bad.exit_code == 1 and "names 3 seeds" in bad.stderr


def test_the_demo_data_is_learnable_by_the_training_pipeline(cache_dir, tmp_path):
    """A short CPU run of the pipeline (a small U-Net from scratch) clearly beats the
    constant all-background predictor on the demo data."""
    from reproduce.demo import demo_data_dir
    from reproduce.profiles import DEMO
    from reproduce.resolve import resolve
    from reproduce.train import build_seeded_model, train
    from test_resolve import ROWS

    overrides = {"model": "Unet", "backbone": "resnet18", "optimizer": "Adam", "lr": 0.003, "scheduler": None,
                 "num_epochs": 8, "batch_size": 8, "image_size": 64}
    job = resolve(ROWS["DeepLabV3_cosinelr"], overrides, profile=DEMO.job).job
    data = demo_data_dir(cache_dir, size=64)
    model = build_seeded_model(job)
    result = train(job, data, tmp_path / "run", cache_dir=cache_dir, model_factory=lambda _job: model)
    constant = 0.0741  # val mIoU of predicting background everywhere on this set
    assert result.epochs[0].val_miou < 2 * constant
    assert result.best_val_miou > 2 * constant


def test_a_notebook_runs_the_same_job_through_the_library(seeded_db, tiny_data):
    # What `ledger reproduce` does, without the CLI: the same functions, the same row.
    from ledger.runs import Request, plan, start
    from ledger.store.db import open_ledger

    overrides = {"image_size": 64, "num_epochs": 1, "batch_size": 2, "val_batch_size": 2, "num_workers": 0}
    request = Request(run=RUN, data=str(tiny_data), overrides=overrides, no_pretrained=True, wandb_mode="disabled",
                      name="from_a_notebook")
    engine = open_ledger(str(seeded_db))
    lines, epochs = [], []

    class Display:
        def __init__(self, num_epochs):
            self.num_epochs = num_epochs

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def on_epoch_start(self, epoch, batches):
            epochs.append((epoch, self.num_epochs))

        def on_batch(self, loss, images):
            pass

        def on_epoch(self, result):
            pass

    original, resolved = plan(engine, request)
    summary = start(engine, request, resolved, progress=Display, say=lines.append)
    engine.dispose()
    assert original == RUN and summary["name"] == "from_a_notebook" and len(summary["epochs"]) == 1
    assert epochs == [(1, 1)] and lines and "from_a_notebook" in lines[0]
    d = details("from_a_notebook")
    assert d["status"] == "finished" and d["parent"] == RUN and d["job_hash"] == resolved.job.hash()
    assert d["val_miou"] == summary["val_miou"]


def test_the_same_demo_command_twice_gives_identical_metrics(seeded_db):
    """Two processes, one command, the tiny demo profile: every epoch's metrics equal bit
    for bit (a CPU, this torch build, the threads it picks), and the second run says so."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "ledger", "reproduce", RUN, "--data", "demo:tiny", "--wandb", "disabled"]
    first, second = (subprocess.run(command, capture_output=True, text=True, timeout=600) for _ in range(2))
    assert first.returncode == 0, first.stderr[-2000:]
    assert second.returncode == 0, second.stderr[-2000:]
    one, two = details(f"{RUN}_repro1"), details(f"{RUN}_repro2")
    assert series(one) == series(two) and len(series(one)["val_miou"]) == 2
    assert f"agrees with {RUN}_repro1 (the same job): identical metrics, every epoch" in second.stderr
    # The profile is one named object: its job fields are overrides naming it, its data recorded.
    provenance = one["job"]["provenance"]
    assert provenance["image_size"] == {"source": "override", "detail": "--data demo:tiny profile"}
    assert one["job"]["data"]["spec"] == "demo:tiny"
    assert one["job"]["data"]["generator"] == {"n_train": 8, "n_val": 4, "n_test": 2, "size": 64}
