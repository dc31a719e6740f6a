"""What the training code did on each date of the log (from PROVENANCE.md).

A row's arguments do not say which backbone, T_max, scheduler stepping, augmentation,
focal gamma or input scaling the job used: those lived in the code, and the code
changed almost daily. Each `CodeState` is one such version, named by its commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class CodeState:
    commit: str
    first_date: str  # ISO date from which rows ran with this code
    summary: str
    values: dict[str, Any]  # job fields this code fixed
    inferred: frozenset[str] = field(default_factory=frozenset)  # fields not seen in a commit


_NO_AUG = dict(
    hflip_p=0.0, rotate_p=0.0, brightness_contrast_p=0.0, cutout_p=0.0, clahe_p=0.0,
    histogram_equalization=False, augment_mask=True,
)
_B7 = dict(backbone="efficientnet-b7", encoder_weights="imagenet")

CODE_STATES: tuple[CodeState, ...] = (
    CodeState(
        "50877aa", "0000-00-00",
        "first commit: b7 backbone, T_max=2 stepped per batch, /255, no augmentation",
        dict(**_B7, **_NO_AUG, t_max=2, scheduler_step="batch", focal_gamma=0.0, input_scale="divide255",
             normalize_mean=None, normalize_std=None, cutmix_prob=0.0, checkpoint_metric="val_loss",
             log_lr=False, smooth_factor=0.05),
        inferred=frozenset({"t_max"}),  # rows of 04-30 ran just before this commit
    ),
    CodeState(
        "50877aa+tmax10", "2021-05-01",
        "50877aa with T_max edited to 10 (the log's 'tmax : 2 -> 10'), still stepped per batch",
        dict(**_B7, **_NO_AUG, t_max=10, scheduler_step="batch", focal_gamma=0.0, input_scale="divide255",
             normalize_mean=None, normalize_std=None, cutmix_prob=0.0, checkpoint_metric="val_loss",
             log_lr=False, smooth_factor=0.05),
        inferred=frozenset({"scheduler_step"}),
    ),
    CodeState(
        "b204f67", "2021-05-02",
        "T_max=10 stepped per epoch, best-mIoU checkpoint",
        dict(**_B7, **_NO_AUG, t_max=10, scheduler_step="epoch", focal_gamma=0.0, input_scale="divide255",
             normalize_mean=None, normalize_std=None, cutmix_prob=0.0, checkpoint_metric="val_miou",
             log_lr=False, smooth_factor=0.05),
    ),
    CodeState(
        "ff6cbeb", "2021-05-03",
        "CutMix on every batch",
        dict(**_B7, **_NO_AUG, t_max=10, scheduler_step="epoch", focal_gamma=0.0, input_scale="divide255",
             normalize_mean=None, normalize_std=None, cutmix_prob=1.0, checkpoint_metric="val_miou",
             log_lr=False, smooth_factor=0.05),
    ),
    CodeState(
        "12e9e30", "2021-05-04",
        "flip/rotate/brightness p=0.3 on the image only, multi loss, T_max=20, CutMix p=0.3",
        dict(**_B7, t_max=20, scheduler_step="epoch", focal_gamma=0.0, input_scale="divide255",
             normalize_mean=None, normalize_std=None, cutmix_prob=0.3, checkpoint_metric="val_miou",
             log_lr=False, smooth_factor=0.05, hflip_p=0.3, rotate_p=0.3, brightness_contrast_p=0.3,
             cutout_p=0.0, clahe_p=0.0, histogram_equalization=False, augment_mask=False),
    ),
    CodeState(
        "4826a70", "2021-05-05",
        "b5_ns backbone, label smoothing 0.05, focal gamma 0.5, heavy augmentation, Normalize on uint8",
        dict(backbone="tf_efficientnet_b5_ns", encoder_weights="noisy-student", t_max=20, scheduler_step="epoch",
             focal_gamma=0.5, input_scale="uint8", normalize_mean=(0.5, 0.5, 0.5), normalize_std=(0.25, 0.25, 0.25),
             cutmix_prob=0.3, checkpoint_metric="val_miou", log_lr=True, smooth_factor=0.05, hflip_p=0.5,
             rotate_p=0.5, brightness_contrast_p=0.5, cutout_p=0.5, clahe_p=0.5, histogram_equalization=False,
             augment_mask=True),
        # CLAHE needs uint8, which only the day's last commit (d45509c) gave.
        inferred=frozenset({"input_scale"}),
    ),
)


def code_state_for(date: Optional[str]) -> CodeState:
    """The code a row of that date ran with; rows without a date get the newest."""
    if not date:
        return CODE_STATES[-1]
    chosen = CODE_STATES[0]
    for state in CODE_STATES:
        if state.first_date <= date:
            chosen = state
    return chosen


# What the seed log's notes and run names say that the code does not. Each entry: the
# field, the value the notes state, the quoted evidence, and which side the job takes
# (with why). Keyed by run name; rows of other logs have none.
@dataclass(frozen=True)
class NoteFact:
    field: str
    value: Any
    quote: str
    prefer_notes: bool
    why: str


def _b7_ns_facts(quote: str) -> tuple[NoteFact, ...]:
    """The 05-02..05-04 runs' noisy-student backbone, which no commit shows."""
    return (
        NoteFact("backbone", "tf_efficientnet_b7_ns", quote, True,
                 "no commit shows a noisy-student backbone; a teammate's copy of this code at that time used "
                 "tf_efficientnet_b7_ns (inferred)"),
        NoteFact("encoder_weights", "noisy-student", quote, True,
                 "a noisy-student backbone comes with its noisy-student weights"),
    )


NOTE_FACTS: dict[str, tuple[NoteFact, ...]] = {
    "DeepLabV3_cosinelr_tmax_10_backbone_ns": (
        *_b7_ns_facts("run name: backbone_ns"),
    ),
    "DeepLabV3_cosinelr_tmax_10_backbone_ns_cutmix": (
        *_b7_ns_facts("run name: backbone_ns"),
    ),
    "DeepLabV3_cosinelr_tmax_10_backbone_ns_added_aug": (
        *_b7_ns_facts("run name: backbone_ns"),
        NoteFact("hflip_p", 0.5, "augmentation으로 RandomHorizontalFlip(p=0.5) 추가", True,
                 "the run's name (added_aug) and its notes both say a flip was added; the commit of that day has it "
                 "only as commented-out code, so it was enabled locally and not committed"),
    ),
    "multiple_aug_with_multi_loss": (
        *_b7_ns_facts("continues the backbone_ns runs"),
        NoteFact("focal_gamma", 0.75, "0.5*focal_loss(gamma=0.75) + 0.5*cross_entropy()로 loss 변경", True,
                 "the notes name the gamma of this very run; the commit's default (0) would make focal equal to "
                 "cross entropy and the multi loss pointless, so the author set 0.75 locally"),
    ),
    "label_smoothing_dual_loss_histogram_equalization": (
        NoteFact("histogram_equalization", True, "histogram equalization을 전처리로 적용", True,
                 "the run's name and notes both say it; the code has it only commented out, enabled locally"),
        NoteFact("criterion1", "label_smoothing", "label smoothing loss와 focal loss 1:1 비율로 혼용", True,
                 "notes and run name say label smoothing + focal; the recorded criterion1='cross_entropy' is the "
                 "argparse default the author did not change (the loss was swapped in code)"),
        NoteFact("input_scale", "divide255", "next row: /255. 대신 normalization 적용", True,
                 "the next row's notes say it replaced /255 with Normalize, so this run still divided by 255"),
        NoteFact("normalize_mean", None, "next row: /255. 대신 normalization 적용", True,
                 "the next row introduced Normalize"),
        NoteFact("normalize_std", None, "next row: /255. 대신 normalization 적용", True,
                 "the next row introduced Normalize"),
        NoteFact("cutout_p", 0.0, "next row: augmentation에 cutout, clache 추가", True,
                 "the next row's notes say it added Cutout and CLAHE"),
        NoteFact("clahe_p", 0.0, "next row: augmentation에 cutout, clache 추가", True,
                 "the next row's notes say it added Cutout and CLAHE"),
    ),
    "backbone_b5ns_label_smoothong_normalization": (
        NoteFact("criterion1", "label_smoothing", "dual loss 대신 label smoothing loss 적용", True,
                 "the notes say label smoothing replaced the dual loss; the recorded arguments were copied from "
                 "the previous row (its run_name is the previous row's)"),
        NoteFact("multi_loss", False, "dual loss 대신 label smoothing loss 적용", True,
                 "the notes say a single label-smoothing loss replaced the dual loss"),
    ),
}
