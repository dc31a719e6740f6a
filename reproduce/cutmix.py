"""CutMix on a stacked segmentation batch, as the original training loop applied it.

The original drove CutMix from numpy's global generator (seeded with the job's seed),
so `np.random` is the default here; tests pass a `np.random.Generator`.

Draws, in order, each from ``rng``:

1. ``uniform(0, 1)``: mix when it is ``> 1 - prob``. Commit ff6cbeb mixed every batch
   and drew nothing; from 12e9e30 the test was ``uniform(0, 1) > 0.7`` (prob 0.3). So
   ``prob >= 1`` draws nothing, anything lower draws once, whichever way it goes.
2. ``lam ~ Beta(beta, beta)``.
3. a permutation of the batch.
4. the box centre: an integer column in ``[0, W)``, then a row in ``[0, H)``.

The box has half-sizes ``int(W * sqrt(1 - lam)) // 2`` and ``int(H * sqrt(1 - lam)) // 2``
around the centre, clipped to the image (the usual CutMix box; an odd size loses a
pixel). Inside it, image and mask come from the permuted sample: hard labels, no
mixing of the loss by area.
"""

from __future__ import annotations

import math
from typing import Any, Union

import numpy as np

RandomSource = Union[np.random.Generator, Any]  # a Generator or the `np.random` module


def _randint(rng: RandomSource, high: int) -> int:
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(high))
    return int(rng.randint(high))


def cutmix_box(height: int, width: int, lam: float, rng: RandomSource) -> tuple[int, int, int, int]:
    """``(y1, y2, x1, x2)`` of a CutMix box for ``lam``, centre drawn from ``rng``."""
    ratio = math.sqrt(1.0 - lam)
    cut_w = int(width * ratio)
    cut_h = int(height * ratio)
    cx = _randint(rng, width)
    cy = _randint(rng, height)
    x1 = min(max(cx - cut_w // 2, 0), width)
    x2 = min(max(cx + cut_w // 2, 0), width)
    y1 = min(max(cy - cut_h // 2, 0), height)
    y2 = min(max(cy + cut_h // 2, 0), height)
    return y1, y2, x1, x2


def cutmix_batch(
    images: Any,
    masks: Any,
    *,
    prob: float,
    beta: float,
    rng: RandomSource = np.random,
) -> tuple[Any, Any, bool]:
    """Maybe CutMix a batch.

    Args:
        images: (N, C, H, W) torch tensor or numpy array.
        masks: (N, H, W) of the same kind.
        prob: probability that the batch is mixed; ``>= 1`` mixes every batch.
        beta: both parameters of the Beta distribution of ``lam``.
        rng: ``np.random`` (the global generator, as the original) or a Generator.

    Returns:
        ``(images, masks, applied)``. When applied, new arrays/tensors; the inputs are
        not modified. When not applied, the inputs themselves.
    """
    if not (prob >= 1 or rng.uniform(0, 1) > 1 - prob):
        return images, masks, False

    lam = float(rng.beta(beta, beta))
    order = np.asarray(rng.permutation(len(images)))
    height, width = images.shape[-2], images.shape[-1]
    if tuple(masks.shape[-2:]) != (height, width):
        raise ValueError(f"mask size {tuple(masks.shape[-2:])} != image size {(height, width)}")
    y1, y2, x1, x2 = cutmix_box(height, width, lam, rng)

    if isinstance(images, np.ndarray):
        mixed_images, mixed_masks = images.copy(), masks.copy()
        image_index = mask_index = order
    else:
        import torch

        mixed_images, mixed_masks = images.clone(), masks.clone()
        image_index = torch.as_tensor(order, device=images.device)
        mask_index = torch.as_tensor(order, device=masks.device)
    mixed_images[:, :, y1:y2, x1:x2] = images[image_index, :, y1:y2, x1:x2]
    mixed_masks[:, y1:y2, x1:x2] = masks[mask_index, y1:y2, x1:x2]
    return mixed_images, mixed_masks, True
