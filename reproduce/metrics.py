"""Segmentation metrics exactly as the competition computed them.

Two different numbers appear in the experiment log and they must not be mixed up:

* ``ValMIoU`` ("Val mIoU" in W&B): ONE 12x12 confusion matrix summed over the whole
  validation set at full resolution, then the mean of the per-class IoUs.
* ``LBMIoU`` (leaderboard, "lb mIoU"): every image on its own, both masks resized to
  256x256 with nearest-neighbour, that image's own mIoU, then the mean over images.

Only numpy and OpenCV are needed; torch tensors on the CPU are accepted wherever an
array is (``np.asarray`` converts them).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# The original spelling ("Backgroud") is kept: it is what W&B tables and notes show.
CLASS_NAMES: tuple[str, ...] = (
    "Backgroud",
    "UNKNOWN",
    "General trash",
    "Paper",
    "Paper pack",
    "Metal",
    "Glass",
    "Plastic",
    "Styrofoam",
    "Plastic bag",
    "Battery",
    "Clothing",
)
NUM_CLASSES = 12
LB_SIZE = 256


def confusion_matrix(pred, true, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Count (truth, prediction) pairs over all pixels.

    Args:
        pred: predicted class indices, any shape.
        true: ground-truth class indices, same shape as ``pred``. Pixels whose truth is
            outside ``0..num_classes-1`` (e.g. an ignore label 255) are not counted.
        num_classes: size of the matrix.

    Returns:
        int64 array (num_classes, num_classes); rows are truth, columns prediction.
    """
    pred = np.asarray(pred)
    true = np.asarray(true)
    if pred.shape != true.shape:
        raise ValueError(f"prediction shape {pred.shape} != truth shape {true.shape}")
    pred = pred.reshape(-1).astype(np.int64, copy=False)
    true = true.reshape(-1).astype(np.int64, copy=False)
    keep = (true >= 0) & (true < num_classes)
    pred = pred[keep]
    true = true[keep]
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f"predicted class outside 0..{num_classes - 1}")
    counts = np.bincount(num_classes * true + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64, copy=False)


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """IoU of each class: diag / (row_sum + col_sum - diag); NaN where that is 0/0."""
    cm = np.asarray(cm, dtype=np.float64)
    diag = np.diag(cm)
    denom = cm.sum(axis=1) + cm.sum(axis=0) - diag
    iou = np.full(diag.shape, np.nan)
    present = denom > 0
    iou[present] = diag[present] / denom[present]
    return iou


def mean_iou(cm: np.ndarray) -> float:
    """Mean IoU over the classes present in truth or prediction (NaN if none is)."""
    iou = iou_per_class(cm)
    valid = iou[~np.isnan(iou)]
    return float(valid.mean()) if valid.size else math.nan


def _batch(arr) -> np.ndarray:
    arr = np.asarray(arr)
    return arr[None] if arr.ndim == 2 else arr


class ValMIoU:
    """Validation mIoU as logged to W&B: one matrix accumulated over the whole set."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        self.num_classes = num_classes
        self.cm = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred, true) -> None:
        """Add a batch of predicted and true masks, each (N, H, W) or (H, W)."""
        self.cm += confusion_matrix(_batch(pred), _batch(true), self.num_classes)

    def compute(self) -> dict:
        """Return ``{"miou": float (NaN if nothing seen), "per_class": {name: IoU or None}}``."""
        iou = iou_per_class(self.cm)
        names = CLASS_NAMES if self.num_classes == NUM_CLASSES else range(self.num_classes)
        per_class = {name: (None if math.isnan(v) else float(v)) for name, v in zip(names, iou)}
        return {"miou": mean_iou(self.cm), "per_class": per_class}


def resize_nearest(mask, size: int = LB_SIZE) -> np.ndarray:
    """Resize a (H, W) label mask to (size, size) with nearest-neighbour, as the LB did."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected one (H, W) mask, got shape {mask.shape}")
    # OpenCV cannot resize int64; int32 keeps any label value (e.g. 255) intact.
    return cv2.resize(mask.astype(np.int32), (size, size), interpolation=cv2.INTER_NEAREST)


def lb_image_miou(pred, true, num_classes: int = NUM_CLASSES) -> float:
    """Leaderboard mIoU of one image: both (H, W) masks resized to 256x256 first."""
    cm = confusion_matrix(resize_nearest(pred), resize_nearest(true), num_classes)
    return mean_iou(cm)


class LBMIoU:
    """Leaderboard mIoU: the mean over images of each image's own 256x256 mIoU."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        self.num_classes = num_classes
        self.scores: list[float] = []

    def update(self, pred, true) -> None:
        """Add a batch of predicted and true masks, each (N, H, W) or (H, W)."""
        pred, true = _batch(pred), _batch(true)
        if pred.shape[0] != true.shape[0]:
            raise ValueError(f"{pred.shape[0]} predictions for {true.shape[0]} masks")
        for p, t in zip(pred, true):
            self.scores.append(lb_image_miou(p, t, self.num_classes))

    def compute(self) -> float:
        """Mean over images; an image with no scorable pixel (NaN) is skipped."""
        valid = [s for s in self.scores if not math.isnan(s)]
        return float(np.mean(valid)) if valid else math.nan


def submission_row(pred_512) -> str:
    """The competition's ``PredictionString``: the 256x256 nearest-resized mask, row-major."""
    return " ".join(map(str, resize_nearest(pred_512).ravel().tolist()))
