"""Training and validation losses, built from a resolved `Job`.

torch and segmentation-models-pytorch are imported inside the builders, so that the
job resolver can import `SUPPORTED_CRITERIA` without loading the training stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch

    from reproduce.job import Job

    LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

SUPPORTED_CRITERIA: tuple[str, ...] = ("cross_entropy", "focal", "label_smoothing", "dice")


class FocalLoss:
    """Softmax focal loss, ``mean(-(1 - p_t) ** gamma * log p_t)`` over all pixels, no alpha.

    With ``gamma == 0`` the factor is exactly 1 and this is plain cross entropy, which is
    what the log's `focal` runs before 2021-05-05 trained with.
    """

    def __init__(self, gamma: float):
        self.gamma = float(gamma)

    def __call__(self, logits: "torch.Tensor", target: "torch.Tensor") -> "torch.Tensor":
        import torch.nn.functional as F

        log_p = F.log_softmax(logits, dim=1)
        log_p_t = log_p.gather(1, target.unsqueeze(1)).squeeze(1)
        p_t = log_p_t.exp()
        return (-((1.0 - p_t) ** self.gamma) * log_p_t).mean()

    def __repr__(self) -> str:
        return f"FocalLoss(gamma={self.gamma})"


class WeightedSumLoss:
    """``sum(w_i * loss_i(logits, target))``: the original's `multi_loss`."""

    def __init__(self, terms: tuple[tuple[float, "LossFn"], ...]):
        self.terms = terms

    def __call__(self, logits: "torch.Tensor", target: "torch.Tensor") -> "torch.Tensor":
        total = None
        for weight, loss in self.terms:
            value = weight * loss(logits, target)
            total = value if total is None else total + value
        return total

    def __repr__(self) -> str:
        inner = " + ".join(f"{w} * {loss!r}" for w, loss in self.terms)
        return f"WeightedSumLoss({inner})"


def build_criterion(name: str, job: "Job", *, key: str = "criterion") -> "LossFn":
    """One loss by name.

    Args:
        name: one of `SUPPORTED_CRITERIA` (case-insensitive).
        job: supplies `focal_gamma` and `smooth_factor`.
        key: the job field the name came from, for the error message.

    Raises:
        ValueError: the name is not supported.
    """
    canonical = (name or "").lower()
    if canonical == "cross_entropy":
        import torch.nn as nn

        return nn.CrossEntropyLoss()
    if canonical == "focal":
        return FocalLoss(job.focal_gamma)
    if canonical == "label_smoothing":
        from segmentation_models_pytorch.losses import SoftCrossEntropyLoss

        return SoftCrossEntropyLoss(smooth_factor=job.smooth_factor)
    if canonical == "dice":
        from segmentation_models_pytorch.losses import DiceLoss

        return DiceLoss(mode="multiclass")
    raise ValueError(f"unknown {key} {name!r}; supported: {', '.join(SUPPORTED_CRITERIA)}")


def build_loss(job: "Job") -> tuple["LossFn", "LossFn"]:
    """The training loss and the validation loss of a job.

    Args:
        job: the resolved job. `criterion1` is always used; with `multi_loss` the
            training loss is ``loss_weights[0] * criterion1 + loss_weights[1] * criterion2``.

    Returns:
        ``(train_loss, val_loss)``, each called as ``loss(logits (N,C,H,W), target (N,H,W)
        int64) -> scalar``. Validation always uses criterion1 alone, as the original did.

    Raises:
        ValueError: an unknown criterion, or `multi_loss` without `criterion2`.
    """
    criterion1 = build_criterion(job.criterion1, job, key="criterion1")
    if not job.multi_loss:
        return criterion1, criterion1
    if job.criterion2 is None:
        raise ValueError("multi_loss=True needs criterion2; supported: " + ", ".join(SUPPORTED_CRITERIA))
    criterion2 = build_criterion(job.criterion2, job, key="criterion2")
    w1, w2 = job.loss_weights
    return WeightedSumLoss(((w1, criterion1), (w2, criterion2))), criterion1
