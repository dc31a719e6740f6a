"""Optimiser and learning-rate schedule, built from a resolved `Job`.

torch and madgrad are imported inside the builders, so that the job resolver can
import the `SUPPORTED_*` names without loading the training stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Optional

from reproduce.losses import SUPPORTED_CRITERIA

if TYPE_CHECKING:
    import torch

    from reproduce.job import Job

SUPPORTED_OPTIMIZERS: tuple[str, ...] = ("MADGRAD", "Adam", "AdamW", "SGD")
SUPPORTED_SCHEDULERS: tuple[str, ...] = ("CosineAnnealingLR",)

__all__ = [
    "SUPPORTED_CRITERIA",
    "SUPPORTED_OPTIMIZERS",
    "SUPPORTED_SCHEDULERS",
    "build_optimizer",
    "build_scheduler",
    "canonical_name",
]


def canonical_name(name: Optional[str], supported: tuple[str, ...], key: str) -> str:
    """The supported spelling of ``name``, matched case-insensitively.

    Raises:
        ValueError: naming ``key`` and listing ``supported``.
    """
    for candidate in supported:
        if name is not None and name.lower() == candidate.lower():
            return candidate
    raise ValueError(f"unknown {key} {name!r}; supported: {', '.join(supported)}")


def build_optimizer(job: "Job", params: Iterable[Any]) -> "torch.optim.Optimizer":
    """The job's optimiser over ``params``.

    Args:
        job: supplies `optimizer`, `lr`, `weight_decay` and (SGD only) `momentum`.
        params: model parameters or parameter groups.

    MADGRAD gets only ``lr`` and ``weight_decay``, as in the original runs; its other
    arguments keep the `madgrad` package's defaults (momentum 0.9, eps 1e-6).
    """
    name = canonical_name(job.optimizer, SUPPORTED_OPTIMIZERS, "optimizer")
    if name == "MADGRAD":
        from madgrad import MADGRAD

        return MADGRAD(params, lr=job.lr, weight_decay=job.weight_decay)

    import torch

    if name == "Adam":
        return torch.optim.Adam(params, lr=job.lr, weight_decay=job.weight_decay)
    if name == "AdamW":
        return torch.optim.AdamW(params, lr=job.lr, weight_decay=job.weight_decay)
    return torch.optim.SGD(params, lr=job.lr, momentum=job.momentum, weight_decay=job.weight_decay)


def build_scheduler(job: "Job", optimizer: "torch.optim.Optimizer") -> Optional[Any]:
    """The job's learning-rate scheduler, or None when the job has none.

    Args:
        job: supplies `scheduler`, `t_max` and `eta_min`. Whether it is stepped per batch
            or per epoch (`job.scheduler_step`) is the training loop's business.
        optimizer: the optimiser it drives.
    """
    if job.scheduler is None:
        return None
    canonical_name(job.scheduler, SUPPORTED_SCHEDULERS, "scheduler")
    from torch.optim.lr_scheduler import CosineAnnealingLR

    return CosineAnnealingLR(optimizer, T_max=job.t_max, eta_min=job.eta_min)
