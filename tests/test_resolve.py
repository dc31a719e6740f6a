"""Row -> job resolution: every seed row, the refusals, and rows of the same family."""

from __future__ import annotations

import json

import pytest

from conftest import SEED
from ledger.core.args import parse_arguments
from reproduce.job import JOB_FIELDS, Job
from ledger.store.jobrecord import rows_from_log
from reproduce.profiles import DEMO, TINY, demo_profile
from reproduce.resolve import ResolveError, RowInput, resolve


ROWS = rows_from_log(SEED.read_text(encoding="utf-8"))

# name: (code_state, backbone, encoder_weights, t_max, step, criterion1, criterion2, multi_loss, focal_gamma,
#        hflip_p, rotate_p, brightness_contrast_p, cutout_p, clahe_p, augment_mask, cutmix, cutmix_prob,
#        input_scale, histogram_equalization, checkpoint_metric, num_epochs, batch_size, weight_decay)
EXPECTED = {
    "DeepLabV3_cosinelr": ("50877aa", "efficientnet-b7", "imagenet", 2, "batch", "cross_entropy", None, False, 0.0,
                           0.0, 0.0, 0.0, 0.0, 0.0, True, False, 0.0, "divide255", False, "val_loss", 10, 8, 1e-4),
    "DeepLabV3_cosinelr_tmax_10_focal": ("50877aa+tmax10", "efficientnet-b7", "imagenet", 10, "batch", "cross_entropy",
                                         None, False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, True, False, 0.0, "divide255",
                                         False, "val_loss", 10, 8, 1e-6),
    "DeepLabV3_cosinelr_tmax_10_focal_gamma_0": ("50877aa+tmax10", "efficientnet-b7", "imagenet", 10, "batch", "focal",
                                                 None, False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, True, False, 0.0,
                                                 "divide255", False, "val_loss", 10, 4, 1e-6),
    "DeepLabV3_cosinelr_tmax_10_backbone_ns": ("b204f67", "tf_efficientnet_b7_ns", "noisy-student", 10, "epoch",
                                               "cross_entropy", None, False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, True, False,
                                               0.0, "divide255", False, "val_miou", 15, 8, 1e-6),
    "DeepLabV3_cosinelr_tmax_10_backbone_ns_cutmix": ("ff6cbeb", "tf_efficientnet_b7_ns", "noisy-student", 10, "epoch",
                                                      "cross_entropy", None, False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, True,
                                                      True, 1.0, "divide255", False, "val_miou", 20, 8, 1e-6),
    "DeepLabV3_cosinelr_tmax_10_backbone_ns_added_aug": ("ff6cbeb", "tf_efficientnet_b7_ns", "noisy-student", 10,
                                                         "epoch", "cross_entropy", None, False, 0.0, 0.5, 0.0, 0.0,
                                                         0.0, 0.0, True, False, 1.0, "divide255", False, "val_miou",
                                                         20, 8, 1e-4),
    "multiple_aug_with_multi_loss": ("12e9e30", "tf_efficientnet_b7_ns", "noisy-student", 20, "epoch", "cross_entropy",
                                     "focal", True, 0.75, 0.3, 0.3, 0.3, 0.0, 0.0, False, False, 0.3, "divide255",
                                     False, "val_miou", 20, 8, 1e-4),
    "label_smoothing_dual_loss_histogram_equalization": ("4826a70", "tf_efficientnet_b5_ns", "noisy-student", 20,
                                                         "epoch", "label_smoothing", "focal", True, 0.5, 0.5, 0.5, 0.5,
                                                         0.0, 0.0, True, False, 0.3, "divide255", True, "val_miou",
                                                         25, 8, 1e-4),
    "backbone_b5ns_label_smoothong_normalization": ("4826a70", "tf_efficientnet_b5_ns", "noisy-student", 20, "epoch",
                                                    "label_smoothing", "focal", False, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5,
                                                    True, False, 0.3, "uint8", False, "val_miou", 25, 8, 1e-4),
}
FIELDS = ("code_state", "backbone", "encoder_weights", "t_max", "scheduler_step", "criterion1", "criterion2",
          "multi_loss", "focal_gamma", "hflip_p", "rotate_p", "brightness_contrast_p", "cutout_p", "clahe_p",
          "augment_mask", "cutmix", "cutmix_prob", "input_scale", "histogram_equalization", "checkpoint_metric",
          "num_epochs", "batch_size", "weight_decay")


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_seed_row_resolves_as_provenance_says(name):
    job = resolve(ROWS[name]).job
    assert tuple(getattr(job, f) for f in FIELDS) == EXPECTED[name]
    assert job.model == "DeepLabV3" and job.optimizer == "MADGRAD" and job.seed == 42 and job.lr in (5e-05, 1e-4)
    assert job.pretrained and job.image_size == 512 and job.num_workers == 4
    expected_norm = (0.5, 0.5, 0.5) if job.input_scale == "uint8" else None
    assert job.normalize_mean == expected_norm


def test_every_field_has_a_source():
    resolved = resolve(ROWS["multiple_aug_with_multi_loss"])
    assert set(resolved.provenance) == set(JOB_FIELDS)
    sources = {f: p.source for f, p in resolved.provenance.items()}
    assert sources["lr"] == "recorded" and sources["t_max"] == "code-state" and sources["focal_gamma"] == "notes"
    assert sources["eta_min"] == "default"
    assert resolved.provenance["focal_gamma"].detail.startswith("0.5*focal_loss(gamma=0.75)")


def test_conflicts_name_both_sides_and_the_override():
    resolved = resolve(ROWS["multiple_aug_with_multi_loss"])
    gamma = next(c for c in resolved.conflicts if c.field == "focal_gamma")
    assert (gamma.chosen, gamma.chosen_source, gamma.alternative, gamma.alternative_source) == (0.75, "notes", 0.0, "code-state")
    assert gamma.override_hint() == "--set focal_gamma=0.0"
    flip = next(c for c in resolve(ROWS["DeepLabV3_cosinelr_tmax_10_backbone_ns_added_aug"]).conflicts if c.field == "hflip_p")
    assert (flip.chosen, flip.alternative) == (0.5, 0.0)
    histeq = {c.field for c in resolve(ROWS["label_smoothing_dual_loss_histogram_equalization"]).conflicts}
    assert {"histogram_equalization", "criterion1", "input_scale", "cutout_p", "clahe_p"} <= histeq
    taken = resolve(ROWS["multiple_aug_with_multi_loss"], {"focal_gamma": 0.0})
    assert taken.job.focal_gamma == 0.0 and taken.provenance["focal_gamma"].source == "override"


def test_ensemble_is_refused():
    with pytest.raises(ResolveError, match="no recorded arguments"):
        resolve(ROWS["Ensemble"])


def test_unknown_override_lists_known_keys():
    with pytest.raises(ResolveError, match="unknown job key 'learning_rate'; known keys: model, backbone"):
        resolve(ROWS["DeepLabV3_cosinelr"], {"learning_rate": 0.1})


def test_override_values_are_type_checked():
    job = resolve(ROWS["DeepLabV3_cosinelr"], {"num_epochs": "3", "cutmix": "True", "lr": 2e-4}).job
    assert (job.num_epochs, job.cutmix, job.lr) == (3, True, 2e-4)
    with pytest.raises(ResolveError, match="num_epochs=2.5: expected an integer"):
        resolve(ROWS["DeepLabV3_cosinelr"], {"num_epochs": 2.5})
    with pytest.raises(ResolveError, match="scheduler_step='weekly': expected one of batch, epoch"):
        resolve(ROWS["DeepLabV3_cosinelr"], {"scheduler_step": "weekly"})
    with pytest.raises(ResolveError, match="clahe_p > 0 needs input_scale='uint8'"):
        resolve(ROWS["DeepLabV3_cosinelr"], {"clahe_p": 0.5})


@pytest.mark.parametrize("overrides, message", [
    ({"lr": float("nan")}, "lr must be a finite number more than 0, not nan"),
    ({"lr": float("inf")}, "lr must be a finite number more than 0, not inf"),
    ({"lr": -1}, "lr must be a finite number more than 0, not -1.0"),
    ({"lr": 0}, "lr must be a finite number more than 0, not 0.0"),
    ({"lr": "abc"}, "lr='abc': expected a number$"),
    ({"num_epochs": "ten"}, "num_epochs='ten': expected an integer$"),
    ({"weight_decay": -0.1}, "weight_decay must be a finite number at least 0"),
    ({"momentum": 1.5}, "momentum must be a finite number at least 0 and at most 1"),
    ({"loss_weights": (0.5, float("nan"))}, "loss_weights must hold finite numbers"),
    ({"max_train_images": 0}, "max_train_images must be at least 1"),
])
def test_override_values_are_range_checked(overrides, message):
    with pytest.raises(ResolveError, match=message):
        resolve(ROWS["DeepLabV3_cosinelr"], overrides)


def test_the_other_side_of_a_conflict_is_a_shell_safe_option():
    import shlex

    from reproduce.job import Conflict

    hint = Conflict("normalize_mean", None, "code-state", (0.5, 0.5, 0.5), "notes", "why").override_hint()
    assert hint == "--set 'normalize_mean=(0.5, 0.5, 0.5)'"
    assert shlex.split(hint) == ["--set", "normalize_mean=(0.5, 0.5, 0.5)"]


def test_demo_profile_is_recorded_as_overrides():
    resolved = resolve(ROWS["DeepLabV3_cosinelr_tmax_10_backbone_ns"], profile=DEMO.job, profile_name=DEMO.label)
    for field, value in DEMO.job.items():
        assert getattr(resolved.job, field) == value
        assert resolved.provenance[field].source == "override"
        assert resolved.provenance[field].detail == "--data demo profile"
    assert resolved.job.backbone == "tf_efficientnet_b7_ns"  # the real architecture


def test_demo_profiles_are_named_by_the_data_option():
    assert demo_profile("demo") is DEMO and demo_profile("demo:tiny") is TINY
    assert demo_profile("/data/trash") is None and demo_profile(None) is None
    assert demo_profile("demonstration") is None, "only demo and demo:NAME name a profile"
    with pytest.raises(ValueError, match="no such demo profile; known: demo, demo:tiny"):
        demo_profile("demo:huge")
    assert TINY.label == "--data demo:tiny profile"


def test_hash_is_stable_and_tracks_what_the_job_computes():
    a = resolve(ROWS["DeepLabV3_cosinelr"]).job
    assert a.hash() == resolve(ROWS["DeepLabV3_cosinelr"]).job.hash()
    assert a.hash() != resolve(ROWS["DeepLabV3_cosinelr"], {"lr": 1e-3}).job.hash()
    assert a.hash() == a.replace(device="cuda", num_workers=0, wandb_name="elsewhere").hash()
    round_tripped = Job.from_dict(json.loads(json.dumps(a.to_dict())))
    assert round_tripped == a and round_tripped.hash() == a.hash()


def family_row(text: str) -> RowInput:
    parsed = parse_arguments(text)
    assert parsed.status == "ok"
    return RowInput("family", "2021-05-06", parsed.values, "ok")


def test_rows_of_the_same_family_resolve():
    row = family_row("batch_size=16, criterion='focal+dice', encoder_name='timm-efficientnet-b5', "
                     "encoder_weights='noisy-student', lr=0.0003, model='DeepLabV3Plus', num_epochs=30, "
                     "optimizer='AdamW', seed=7, weight_decay=0.01")
    job = resolve(row).job
    assert (job.model, job.backbone, job.encoder_weights) == ("DeepLabV3Plus", "timm-efficientnet-b5", "noisy-student")
    assert (job.criterion1, job.criterion2, job.multi_loss) == ("focal", "dice", True)
    assert (job.optimizer, job.lr, job.seed, job.batch_size) == ("AdamW", 0.0003, 7, 16)
    for optimizer in ("adam", "SGD", "madgrad"):
        assert resolve(family_row(f"model='DeepLabV3', optimizer='{optimizer}'")).job.optimizer.lower() == optimizer.lower()


def test_unsupported_values_name_the_key_and_the_choices():
    with pytest.raises(ResolveError, match=r"optimizer='RAdam' is not supported; supported: MADGRAD, Adam, AdamW, SGD"):
        resolve(family_row("model='DeepLabV3', optimizer='RAdam'"))
    with pytest.raises(ResolveError, match=r"criterion='lovasz' is not a supported loss; supported: cross_entropy"):
        resolve(family_row("model='DeepLabV3', criterion='lovasz'"))
    with pytest.raises(ResolveError, match="recorded argument\\(s\\) fold have no meaning"):
        resolve(family_row("model='DeepLabV3', fold=5"))
    with pytest.raises(ResolveError, match="must also record encoder_name"):
        resolve(family_row("model='Unet'"))
