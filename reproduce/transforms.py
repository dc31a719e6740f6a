"""Image/mask transforms of a resolved `Job`, rebuilding the albumentations 0.5.2 pipelines.

The original runs used albumentations 0.5.2; this module uses 2.x and spells out every
parameter whose 0.5.2 value differs from, or is not guaranteed by, a 2.x default:

* ``Rotate``: linear interpolation for the image, nearest for the mask, border
  ``BORDER_REFLECT_101`` for both (2.x defaults to a constant black border), no crop.
* ``RandomBrightnessContrast``: limits +-0.2 / +-0.2, brightness scaled by the dtype's
  maximum (``brightness_by_max=True``), no "safe range" clamping of alpha/beta; the
  result is clipped to the dtype's range, as 0.5.2 did for uint8 and float32.
* ``Cutout(num_holes=4, max_h_size=20, max_w_size=20)`` no longer exists: it becomes
  ``CoarseDropout`` with exactly that many holes of exactly that size, filled with 0,
  the mask left untouched (Cutout was image-only).
* ``CLAHE(clip_limit=4.0)`` meant a clip limit drawn from [1, 4], tiles 8x8, uint8 only.
* ``Normalize(mean, std, max_pixel_value=255)``: ``(x - mean*255) / (std*255)``.

Known, unavoidable differences from 0.5.2 (documented, not fixable by parameters):

* The random streams cannot match 0.5.2's bit for bit. 0.5.2 drew everything from
  Python's global ``random``, in whichever DataLoader worker loaded the item. Here one
  ``random.Random(seed)`` and one ``np.random.default_rng(seed)`` are shared by all
  transforms of the pipeline, so, as in 0.5.2, the transforms consume one stream in
  turn; but CoarseDropout draws its hole positions from numpy where Cutout used
  ``random``, and the seeding is ours, not the original's.
* 0.5.2's Cutout centred each hole on a uniform pixel and clipped it at the border;
  CoarseDropout places every hole wholly inside the image.
* 2.x rotates about ``(w/2 - 0.5, h/2 - 0.5)``, the true centre in pixel coordinates;
  0.5.2 used ``(w/2, h/2)``: a half-pixel shift of the rotated image and mask.

Only `build_transforms` is needed by the trainer.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Optional

import cv2
import numpy as np

if TYPE_CHECKING:
    from reproduce.job import Job

# 0.5.2 defaults that 2.x changed or removed; named so a reader can check them.
ROTATE_INTERPOLATION = cv2.INTER_LINEAR
ROTATE_MASK_INTERPOLATION = cv2.INTER_NEAREST
ROTATE_BORDER_MODE = cv2.BORDER_REFLECT_101
BRIGHTNESS_LIMIT = (-0.2, 0.2)
CONTRAST_LIMIT = (-0.2, 0.2)
CLAHE_CLIP_LIMIT = (1.0, 4.0)
CLAHE_TILE_GRID = (8, 8)
MAX_PIXEL_VALUE = 255.0

# Mask dtypes cv2.warpAffine accepts; others are narrowed before a geometric transform.
_CV_MASK_DTYPES = (np.uint8, np.uint16, np.int16, np.float32, np.float64)


def equalize_luma(image: np.ndarray) -> np.ndarray:
    """Histogram-equalise the luma of an RGB image (RGB -> YCrCb, equalise Y, back).

    OpenCV equalises uint8 only. A float image is taken to be the dataset's
    ``uint8 / 255``: ``rint(x * 255)`` recovers those exact uint8 values, so equalising
    and dividing by 255 again gives what equalising before the division would have
    (the original did this on the image as read, before scaling).
    """
    if image.dtype == np.uint8:
        return _equalize_uint8(image)
    as_uint8 = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return _equalize_uint8(as_uint8).astype(np.float32) / np.float32(255.0)


def _equalize_uint8(image: np.ndarray) -> np.ndarray:
    ycrcb = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
    ycrcb[..., 0] = cv2.equalizeHist(np.ascontiguousarray(ycrcb[..., 0]))
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)


def _warpable_mask(mask: np.ndarray) -> np.ndarray:
    if mask.dtype in _CV_MASK_DTYPES:
        return mask
    low, high = (int(mask.min()), int(mask.max())) if mask.size else (0, 0)
    if 0 <= low and high <= 255:
        return mask.astype(np.uint8)
    if -32768 <= low and high <= 32767:
        return mask.astype(np.int16)
    return mask.astype(np.float32)


class SegmentationTransform:
    """Callable ``t(image=HxWx3 array, mask=HxW array | None) -> {"image", "mask"}``.

    The image comes back as a float32 CHW tensor, the mask (when given) as an int64 HW
    tensor. With ``augment_mask=False`` the augmentations see only the image, so a flip
    or rotation moves the image while its mask stays as it was (the 2021-05-04 bug).
    """

    def __init__(
        self,
        compose: Any,
        *,
        histogram_equalization: bool,
        augment_mask: bool,
        needs_uint8: bool,
        seed: int,
    ):
        self.compose = compose
        self.histogram_equalization = histogram_equalization
        self.augment_mask = augment_mask
        self.needs_uint8 = needs_uint8
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the random streams from ``seed``.

        albumentations 2.x gives each transform its own generator seeded identically,
        which makes sibling transforms' first coin flips equal; sharing one pair of
        generators across the pipeline avoids that. Call this from a DataLoader
        ``worker_init_fn`` (e.g. with ``seed + worker_id``): forked workers otherwise
        repeat each other's augmentations.
        """
        self.seed = seed
        self.compose.set_random_state(np.random.default_rng(seed), random.Random(seed))

    def __call__(self, *, image: np.ndarray, mask: Optional[np.ndarray] = None) -> dict[str, Any]:
        import torch

        image = np.asarray(image)
        if self.needs_uint8 and image.dtype != np.uint8:
            raise TypeError(f"CLAHE needs a uint8 image (input_scale 'uint8'), got {image.dtype}")
        if self.histogram_equalization:
            image = equalize_luma(image)

        if mask is not None and self.augment_mask:
            out = self.compose(image=image, mask=_warpable_mask(np.asarray(mask)))
            mask_tensor = out["mask"]
        else:
            out = self.compose(image=image)
            mask_tensor = None if mask is None else torch.from_numpy(np.ascontiguousarray(mask))

        result = {"image": out["image"].float()}
        if mask_tensor is not None:
            result["mask"] = mask_tensor.long()
        return result

    def __repr__(self) -> str:
        return (
            f"SegmentationTransform(histogram_equalization={self.histogram_equalization}, "
            f"augment_mask={self.augment_mask}, seed={self.seed}, compose={self.compose!r})"
        )


def build_transforms(job: "Job", *, train: bool, seed: int) -> SegmentationTransform:
    """The transform applied to each dataset item.

    Order: histogram equalisation (preprocessing, also for validation/test), then for
    training HorizontalFlip, Rotate, RandomBrightnessContrast, Cutout, CLAHE (each only
    when its probability is above 0), then Normalize (when `normalize_mean` is set) and
    ToTensorV2. Validation/test: equalisation, Normalize, ToTensorV2.

    Normalize always divides by ``std * 255`` as the original did. It is meant for the
    uint8 path; on ``input_scale="divide255"`` images it reproduces what the original
    code computed on its [0, 1] floats.

    Args:
        job: the resolved job (augmentation probabilities, sizes, normalisation).
        train: the training pipeline (augmentations) or the validation/test one.
        seed: seeds the augmentation streams: the same seed gives the same outputs for
            the same sequence of calls.

    Raises:
        ValueError: the job asks for CLAHE on float images (``input_scale="divide255"``);
            0.5.2's CLAHE rejected them and 2.x would silently convert them.
    """
    import albumentations as A
    from albumentations.pytorch import ToTensorV2

    if job.clahe_p > 0 and job.input_scale != "uint8":
        raise ValueError(
            f"clahe_p={job.clahe_p} needs input_scale='uint8' (CLAHE works on uint8 images), "
            f"but input_scale={job.input_scale!r}"
        )
    if (job.normalize_mean is None) != (job.normalize_std is None):
        raise ValueError("normalize_mean and normalize_std must be set together")

    steps: list[Any] = []
    if train:
        if job.hflip_p > 0:
            steps.append(A.HorizontalFlip(p=job.hflip_p))
        if job.rotate_p > 0:
            steps.append(
                A.Rotate(
                    limit=(-job.rotate_limit, job.rotate_limit),
                    interpolation=ROTATE_INTERPOLATION,
                    mask_interpolation=ROTATE_MASK_INTERPOLATION,
                    border_mode=ROTATE_BORDER_MODE,
                    rotate_method="largest_box",
                    crop_border=False,
                    fill=0,
                    fill_mask=0,
                    p=job.rotate_p,
                )
            )
        if job.brightness_contrast_p > 0:
            steps.append(
                A.RandomBrightnessContrast(
                    brightness_limit=BRIGHTNESS_LIMIT,
                    contrast_limit=CONTRAST_LIMIT,
                    brightness_by_max=True,
                    ensure_safe_range=False,
                    p=job.brightness_contrast_p,
                )
            )
        if job.cutout_p > 0:
            steps.append(
                A.CoarseDropout(
                    num_holes_range=(job.cutout_holes, job.cutout_holes),
                    hole_height_range=(job.cutout_size, job.cutout_size),
                    hole_width_range=(job.cutout_size, job.cutout_size),
                    fill=0,
                    fill_mask=None,
                    p=job.cutout_p,
                )
            )
        if job.clahe_p > 0:
            steps.append(A.CLAHE(clip_limit=CLAHE_CLIP_LIMIT, tile_grid_size=CLAHE_TILE_GRID, p=job.clahe_p))
    if job.normalize_mean is not None:
        steps.append(
            A.Normalize(
                mean=tuple(job.normalize_mean),
                std=tuple(job.normalize_std),
                max_pixel_value=MAX_PIXEL_VALUE,
                normalization="standard",
                p=1.0,
            )
        )
    steps.append(ToTensorV2(transpose_mask=False, p=1.0))

    compose = A.Compose(steps, p=1.0, seed=seed)
    return SegmentationTransform(
        compose,
        histogram_equalization=job.histogram_equalization,
        augment_mask=job.augment_mask,
        needs_uint8=train and job.clahe_p > 0,
        seed=seed,
    )
