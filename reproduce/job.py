"""The resolved training job: every value explicit, each with where it came from.

A row of the log records only the training script's arguments. The rest of the job
(T_max, the scheduler's stepping, the backbone, the augmentations, the focal gamma, the
input scaling) changed with the code of the row's date. `resolve` (in
`reproduce.resolve`) turns a row into a `Job`; this module holds the type itself, its
serialisation and its hash, and imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
from dataclasses import dataclass
from typing import Any, Literal, Optional

# The log's own DeepLabV3 head on EfficientNet, as opposed to a segmentation-models-pytorch class.
HANDWRITTEN_MODEL = "DeepLabV3"

Source = Literal["recorded", "code-state", "notes", "default", "override"]


@dataclass(frozen=True)
class Job:
    """A complete, typed description of one training job.

    Field names are also the keys that `--set key=value` overrides accept.
    """

    # What it reproduces.
    run_name: str  # the row's name in the ledger
    code_state: str  # the commit of the training code the row ran with

    # Model.
    model: str  # "DeepLabV3" (the log's hand-written head) or a segmentation-models-pytorch class
    backbone: str  # efficientnet-b7 | tf_efficientnet_b7_ns | tf_efficientnet_b5_ns | an smp encoder
    encoder_weights: Optional[str]  # "imagenet", "noisy-student", ... ; None = random init
    pretrained: bool
    weights_path: Optional[str]  # a local weights file used instead of a download
    weights_sha256: Optional[str]
    num_classes: int

    # Loss.
    criterion1: str  # cross_entropy | focal | label_smoothing | dice
    criterion2: Optional[str]
    multi_loss: bool
    loss_weights: tuple[float, float]
    focal_gamma: float
    smooth_factor: float

    # Optimiser and schedule.
    optimizer: str  # MADGRAD | Adam | AdamW | SGD
    lr: float
    weight_decay: float
    momentum: float  # SGD only
    scheduler: Optional[str]  # "CosineAnnealingLR" or None
    t_max: int
    eta_min: float
    scheduler_step: Literal["batch", "epoch"]

    # Data and augmentation.
    image_size: int
    max_train_images: Optional[int]
    max_val_images: Optional[int]
    input_scale: Literal["divide255", "uint8"]  # /255 in the dataset, or uint8 into Normalize
    normalize_mean: Optional[tuple[float, float, float]]
    normalize_std: Optional[tuple[float, float, float]]
    histogram_equalization: bool  # YCrCb, equalise Y, before augmentation
    hflip_p: float
    rotate_p: float
    rotate_limit: int
    brightness_contrast_p: float
    cutout_p: float
    cutout_holes: int
    cutout_size: int
    clahe_p: float
    augment_mask: bool  # False: geometric augmentations moved the image but not its mask
    cutmix: bool
    cutmix_prob: float  # probability that a batch is mixed
    cutmix_beta: float

    # Loop.
    batch_size: int
    val_batch_size: int
    num_epochs: int
    seed: int
    num_workers: int
    train_drop_last: bool
    val_drop_last: bool
    checkpoint_metric: Literal["val_miou", "val_loss"]
    log_lr: bool

    # Runtime.
    device: str  # "auto", "cpu", "cuda", "cuda:1"
    fast: bool  # TF32 + AMP + channels-last on GPU; not bit-exact
    wandb_project: str
    wandb_entity: Optional[str]
    wandb_group: Optional[str]
    wandb_name: str

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Job":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise KeyError(f"unknown job keys: {', '.join(unknown)}")
        values = dict(data)
        for name in TUPLE_FIELDS:
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        return cls(**values)

    def hash(self) -> str:
        return job_hash(self)

    def replace(self, **changes: Any) -> "Job":
        return dataclasses.replace(self, **changes)


TUPLE_FIELDS = ("loss_weights", "normalize_mean", "normalize_std")
JOB_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Job))

# Fields that say how or where the job runs, not what it computes: two jobs that differ
# only here are the same experiment, so they are left out of the hash.
RUNTIME_FIELDS = frozenset(
    {"run_name", "device", "num_workers", "wandb_project", "wandb_entity", "wandb_group", "wandb_name"}
)


def job_hash(job: Job) -> str:
    """sha256 of the job's experiment-defining fields, as canonical JSON."""
    data = {k: v for k, v in job.to_dict().items() if k not in RUNTIME_FIELDS}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Provenance:
    source: Source
    detail: str = ""  # e.g. the commit, the quoted note, the override flag


@dataclass(frozen=True)
class Conflict:
    """The log's notes and its code disagree about a field; `chosen` is what the job uses."""

    field: str
    chosen: Any
    chosen_source: Source
    alternative: Any
    alternative_source: Source
    why: str

    def override_hint(self) -> str:
        """The option that takes the other side, quoted for a POSIX shell."""
        return f"--set {shlex.quote(f'{self.field}={self.alternative!r}')}"


@dataclass(frozen=True)
class ResolvedJob:
    job: Job
    provenance: dict[str, Provenance]
    conflicts: tuple[Conflict, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job.to_dict(),
            "hash": self.job.hash(),
            "provenance": {k: dataclasses.asdict(v) for k, v in self.provenance.items()},
            "conflicts": [dataclasses.asdict(c) | {"override": c.override_hint()} for c in self.conflicts],
        }


def improves(metric: str, value: float, best: Optional[float]) -> bool:
    """Whether an epoch's `metric` value beats the best so far: the rule that picks `best.pt`
    (a higher val mIoU, or a lower val loss; NaN never)."""
    if value != value:  # NaN
        return False
    if best is None:
        return True
    return value > best if metric == "val_miou" else value < best


def checkpoint_epoch(metric: str, series: list[tuple[int, float]]) -> Optional[int]:
    """The epoch whose weights `best.pt` holds, given the (epoch, value) series of `metric`."""
    best, chosen = None, None
    for epoch, value in sorted(series):
        if improves(metric, value, best):
            best, chosen = value, epoch
    return chosen
