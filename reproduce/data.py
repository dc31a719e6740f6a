"""The competition's data: COCO JSON splits, masks, and the PyTorch dataset.

Class index 0 is background; class i (1..11) is the i-th entry of the JSON's
``categories`` list. A mask starts as zeros and every annotation is merged with
``np.maximum``, so where objects overlap the HIGHER class index wins, whatever the
annotation order. Masks can be decoded once per annotation file into a memory-mapped
cache (``MaskCache``) instead of being rasterised again for every item of every epoch.

torch is imported only by ``SegmentationDataset``; the rest needs numpy, OpenCV and
pycocotools.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Literal

import cv2
import numpy as np

from reproduce.hashing import file_sha256
from reproduce.metrics import CLASS_NAMES

# Class i (1..11) is the i-th category of the JSON; class 0 is background.
CATEGORY_NAMES: tuple[str, ...] = CLASS_NAMES[1:]
SPLITS = ("train.json", "val.json", "train_all.json", "test.json")
_SHOW_AT_MOST = 3


class DataError(Exception):
    """A problem with the data folder that the user must fix; the message is one line."""


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a COCO annotation file (top level is not an object)")
    return data


def load_coco(ann_path: str | os.PathLike):
    """A pycocotools ``COCO`` for ``ann_path``, without its progress prints on stdout."""
    from pycocotools.coco import COCO

    ann_path = Path(ann_path)
    dataset = _read_json(ann_path)
    dataset.setdefault("annotations", [])
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def category_index(coco) -> dict[int, int]:
    """Map category_id -> class index (position in the JSON's ``categories`` + 1)."""
    return {cat["id"]: i + 1 for i, cat in enumerate(coco.dataset["categories"])}


def _names(items: list, *, noun: str) -> str:
    shown = ", ".join(str(x) for x in items[:_SHOW_AT_MOST])
    more = f" and {len(items) - _SHOW_AT_MOST} more" if len(items) > _SHOW_AT_MOST else ""
    return f"{len(items)} {noun}{'s' if len(items) != 1 else ''} ({shown}{more})"


def _check_split(data_dir: Path, path: Path) -> None:
    data = _read_json(path)
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path.name} has no '{key}' list")
    images = data["images"]
    category_ids = {c.get("id") for c in data["categories"]}
    image_ids = {img.get("id") for img in images}

    missing = [img.get("file_name") for img in images if not (data_dir / str(img.get("file_name"))).is_file()]
    if missing:
        raise DataError(f"{path.name} names {_names(missing, noun='missing image file')} under {data_dir}")

    bad_category = [a for a in data.get("annotations", []) if a.get("category_id") not in category_ids]
    if bad_category:
        first = bad_category[0]
        raise DataError(
            f"{path.name}: {len(bad_category)} annotation(s) use a category_id not in 'categories' "
            f"(first: annotation {first.get('id')} with category_id {first.get('category_id')!r}; "
            f"known ids: {sorted(category_ids, key=str)})"
        )
    bad_image = [a for a in data.get("annotations", []) if a.get("image_id") not in image_ids]
    if bad_image:
        first = bad_image[0]
        raise DataError(
            f"{path.name}: {len(bad_image)} annotation(s) name an unknown image_id "
            f"(first: annotation {first.get('id')} with image_id {first.get('image_id')!r})"
        )


def validate_data_dir(
    data_dir: str | os.PathLike,
    splits: tuple[str, ...] = ("train.json", "val.json"),
    optional: tuple[str, ...] = ("test.json",),
) -> None:
    """Check a data folder before any training starts; raise ``DataError`` on the first problem.

    Args:
        data_dir: folder holding the COCO JSON files and the image sub-folders.
        splits: annotation files that must exist and be consistent.
        optional: annotation files checked only when present.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data folder {data_dir} does not exist")
    for name in splits:
        if not (data_dir / name).is_file():
            raise DataError(f"{name} is missing from the data folder {data_dir}")
    for name in dict.fromkeys(splits + optional):
        if (data_dir / name).is_file():
            _check_split(data_dir, data_dir / name)


def data_fingerprint(data_dir: str | os.PathLike, splits: tuple[str, ...] = SPLITS) -> dict:
    """Identify the data a job used: per split present, its sha256 and image count.

    Returns:
        ``{"splits": {name: {"sha256": ..., "images": n}}, "total_images": n}``; the total
        counts distinct image files over the splits present (train_all repeats train + val).
    """
    data_dir = Path(data_dir)
    result: dict[str, Any] = {"splits": {}}
    files: set[str] = set()
    for name in splits:
        path = data_dir / name
        if not path.is_file():
            continue
        images = _read_json(path).get("images", [])
        files.update(img["file_name"] for img in images)
        result["splits"][name] = {"sha256": file_sha256(path), "images": len(images)}
    result["total_images"] = len(files)
    return result


def rasterize_mask(coco, image_id: int, cat_index: dict[int, int]) -> np.ndarray:
    """The (H, W) uint8 class mask of one image; overlaps go to the higher class index.

    Args:
        coco: a pycocotools ``COCO`` holding the image and its annotations.
        image_id: the image's id.
        cat_index: category_id -> class index, as built by ``category_index``.
    """
    info = coco.imgs[image_id]
    mask = np.zeros((info["height"], info["width"]), dtype=np.uint8)
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id)):
        mask = np.maximum(mask, coco.annToMask(ann) * np.uint8(cat_index[ann["category_id"]]))
    return mask


class MaskCache:
    """All masks of one annotation file, decoded once, stored as one memory-mapped array.

    The file is ``<cache_dir>/masks/<sha256 of the annotation file>.npy``, a uint8 array
    (N, H, W) in ascending image-id order (smaller images padded with zeros). A changed
    annotation file has another sha256, hence another cache file. Workers share the
    pages through the OS; pickling the cache sends only its path.
    """

    def __init__(self, path: Path, key: str, image_ids: list[int], shapes: list[tuple[int, int]]):
        self.path = Path(path)
        self.key = key
        self.image_ids = image_ids
        self.shapes = shapes
        self._position = {image_id: i for i, image_id in enumerate(image_ids)}
        self._masks: np.ndarray | None = None

    @classmethod
    def load_or_build(cls, ann_path: str | os.PathLike, cache_dir: str | os.PathLike) -> MaskCache:
        """Open the cache for ``ann_path``, building it first if it is absent or damaged.

        Args:
            ann_path: a COCO annotation file with annotations (train, val or train_all).
            cache_dir: root of the cache; masks go to its ``masks/`` sub-folder.
        """
        key = file_sha256(ann_path)
        coco = load_coco(ann_path)
        image_ids = sorted(coco.getImgIds())
        shapes = [(coco.imgs[i]["height"], coco.imgs[i]["width"]) for i in image_ids]
        path = Path(cache_dir) / "masks" / f"{key}.npy"
        cache = cls(path, key, image_ids, shapes)
        if not cache._usable():
            cache._build(coco)
        return cache

    def _expected_shape(self) -> tuple[int, int, int]:
        height = max((h for h, _ in self.shapes), default=0)
        width = max((w for _, w in self.shapes), default=0)
        return (len(self.image_ids), height, width)

    def _usable(self) -> bool:
        try:
            masks = np.load(self.path, mmap_mode="r")
        except (OSError, ValueError):
            return False
        return masks.dtype == np.uint8 and masks.shape == self._expected_shape()

    def _build(self, coco) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        cat_index = category_index(coco)
        # Written next to the target then renamed, so readers only ever see a whole file.
        fd, tmp = tempfile.mkstemp(prefix=f".{self.key}.", suffix=".npy.tmp", dir=self.path.parent)
        os.close(fd)
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=self._expected_shape())
            for i, (image_id, (h, w)) in enumerate(zip(self.image_ids, self.shapes)):
                out[i, :h, :w] = rasterize_mask(coco, image_id, cat_index)
            out.flush()
            del out
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._masks = None

    @property
    def masks(self) -> np.ndarray:
        """The whole (N, H, W) array, memory-mapped read-only."""
        if self._masks is None:
            self._masks = np.load(self.path, mmap_mode="r")
        return self._masks

    def __len__(self) -> int:
        return len(self.image_ids)

    def get(self, index: int) -> np.ndarray:
        """The mask of the ``index``-th image in ascending id order (a read-only view)."""
        h, w = self.shapes[index]
        return self.masks[index, :h, :w]

    def get_by_id(self, image_id: int) -> np.ndarray:
        """The mask of the image with this id."""
        return self.get(self._position[image_id])

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_masks"] = None
        return state


def __getattr__(name: str):
    # SegmentationDataset subclasses torch's Dataset; building it on first access keeps
    # `import reproduce.data` (validation, fingerprints, caches) free of torch.
    if name == "SegmentationDataset":
        cls = _make_dataset_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _make_dataset_class():
    import torch

    class SegmentationDataset(torch.utils.data.Dataset):
        """The competition's images with their class masks.

        Args:
            data_dir: folder the JSON's ``file_name`` entries are relative to.
            ann_file: the split's annotation file (relative to ``data_dir`` or absolute).
            transform: albumentations-style ``transform(image=..., mask=...) -> dict``
                ending with ``ToTensorV2``; None converts to tensors here.
            scale: "divide255" gives the transform float32 RGB / 255 (the code before
                commit d45509c); "uint8" gives it the uint8 RGB image (it normalises).
            mode: "train"/"val" items are (image, mask, info); "test" items (image, info).
            mask_cache: masks decoded once for this ann_file; None rasterises each item's
                mask from its annotations, as the original did.
            max_images: keep only the first N images by id (scaled-down jobs).
        """

        def __init__(
            self,
            data_dir: str | os.PathLike,
            ann_file: str | os.PathLike,
            *,
            transform: Callable[..., dict] | None = None,
            scale: Literal["divide255", "uint8"],
            mode: Literal["train", "val", "test"],
            mask_cache: MaskCache | None,
            max_images: int | None = None,
        ) -> None:
            if scale not in ("divide255", "uint8"):
                raise ValueError(f"scale must be 'divide255' or 'uint8', not {scale!r}")
            if mode not in ("train", "val", "test"):
                raise ValueError(f"mode must be 'train', 'val' or 'test', not {mode!r}")
            if mode == "test" and mask_cache is not None:
                raise ValueError("a test split has no masks; pass mask_cache=None")
            self.data_dir = Path(data_dir)
            self.ann_path = self.data_dir / ann_file
            self.transform = transform
            self.scale = scale
            self.mode = mode
            self.coco = load_coco(self.ann_path)
            self.cat_index = category_index(self.coco)
            self.image_ids = sorted(self.coco.getImgIds())
            if max_images is not None:
                self.image_ids = self.image_ids[:max_images]
            if mask_cache is not None and mask_cache.key != file_sha256(self.ann_path):
                raise ValueError(f"mask_cache was built from another file than {self.ann_path}")
            self.mask_cache = mask_cache

        def __len__(self) -> int:
            return len(self.image_ids)

        def _mask(self, image_id: int) -> np.ndarray:
            if self.mask_cache is not None:
                return np.array(self.mask_cache.get_by_id(image_id))
            return rasterize_mask(self.coco, image_id, self.cat_index)

        def __getitem__(self, index: int):
            image_id = self.image_ids[index]
            info = self.coco.imgs[image_id]
            path = self.data_dir / info["file_name"]
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise DataError(f"cannot read image {path}")
            image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if self.scale == "divide255":
                image = image.astype(np.float32)
                image /= 255.0
            item_info = {"file_name": info["file_name"], "image_id": image_id}

            if self.mode == "test":
                if self.transform is not None:
                    image = self.transform(image=image)["image"]
                return _image_tensor(torch, image), item_info

            mask = self._mask(image_id)
            if self.transform is not None:
                out = self.transform(image=image, mask=mask)
                image, mask = out["image"], out["mask"]
            return _image_tensor(torch, image), _mask_tensor(torch, mask), item_info

    # So that pickle (spawned DataLoader workers) finds it as reproduce.data.SegmentationDataset.
    SegmentationDataset.__module__ = __name__
    SegmentationDataset.__qualname__ = "SegmentationDataset"
    return SegmentationDataset


# dtype conversions go through numpy: torch's CPU casts were measured at 0.05-15 ms for
# one 512x512 mask (intra-op thread wake-ups), numpy's at a steady ~0.1 ms.
def _image_tensor(torch, image) -> Any:
    if isinstance(image, torch.Tensor):
        return image.float()
    # A CHW view, not a copy, as ToTensorV2 gives; collate stacks it into a new batch anyway.
    return torch.from_numpy(np.asarray(image, dtype=np.float32).transpose(2, 0, 1))


def _mask_tensor(torch, mask) -> Any:
    if isinstance(mask, torch.Tensor):
        return mask.long()
    return torch.from_numpy(np.asarray(mask, dtype=np.int64))
