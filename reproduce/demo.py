"""A small synthetic data set in the competition's layout, for tests and dry runs.

Each class has its own colour, shape and (for some) stripes, so a model can learn it;
objects overlap (drawn in ascending class order, so the visible object is the one the
"higher class wins" rule labels), some images are empty, and the background is a noisy
texture. The same arguments always give byte-identical files.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from reproduce.data import CATEGORY_NAMES

# Bump when the generator's output changes, so cached copies are not reused.
DEMO_VERSION = 1
JPEG_QUALITY = 90

# RGB per class 1..11; saturated, so they stand apart from the greyish background.
_COLOURS = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (0, 0, 128),
    (128, 0, 0),
)
_STRIPED = {3, 6, 9, 11}


def _regular(n: int, aspect: float = 1.0) -> np.ndarray:
    angles = np.arange(n) * 2 * math.pi / n
    return np.stack([np.cos(angles), aspect * np.sin(angles)], axis=1)


def _star() -> np.ndarray:
    radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
    return _regular(10) * radii[:, None]


def _cross() -> np.ndarray:
    a, b = 1.0, 0.35
    corners = [(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b)]
    corners += [(b, a), (-b, a), (-b, b), (-a, b), (-a, -b), (-b, -b)]
    return np.array(corners)


# Unit outlines per class 1..11 (class 11 is an irregular blob made per object).
_SHAPES = {
    1: _regular(32),
    2: _regular(3),
    3: _regular(4),
    4: np.array([(-1.0, -0.4), (1.0, -0.4), (1.0, 0.4), (-1.0, 0.4)]),
    5: _regular(6),
    6: _star(),
    7: _regular(32, aspect=0.5),
    8: _cross(),
    9: _regular(5),
    10: _regular(4, aspect=0.6),
}


def _outline(rng: np.random.Generator, cls: int) -> np.ndarray:
    if cls == 11:
        return _regular(12) * rng.uniform(0.6, 1.0, 12)[:, None]
    return _SHAPES[cls]


def _polygon(
    rng: np.random.Generator, cls: int, centre: tuple[float, float], radius: float, size: int
) -> np.ndarray:
    theta = rng.uniform(0, 2 * math.pi)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    points = _outline(rng, cls) @ rot.T * radius + np.asarray(centre)
    return np.clip(np.rint(points), 0, size - 1).astype(np.int32)


def _background(rng: np.random.Generator, size: int, noise: float) -> np.ndarray:
    coarse = rng.normal(0.0, 1.0, (6, 6, 3)).astype(np.float32)
    texture = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    base = np.array([125.0, 115.0, 105.0], np.float32)
    return base + 18.0 * noise * texture + rng.normal(0.0, 10.0 * noise, (size, size, 3)).astype(np.float32)


def _paint(image: np.ndarray, rng: np.random.Generator, cls: int, points: np.ndarray) -> None:
    size = image.shape[0]
    region = np.zeros((size, size), np.uint8)
    cv2.fillPoly(region, [points], 1)
    inside = region.astype(bool)
    colour = np.array(_COLOURS[cls - 1], np.float32) * rng.uniform(0.9, 1.05)
    shade = np.ones((size, size), np.float32)
    if cls in _STRIPED:
        yy, xx = np.mgrid[0:size, 0:size]
        angle = rng.uniform(0, math.pi)
        phase = (xx * math.cos(angle) + yy * math.sin(angle)) // max(2, size // 32)
        shade = np.where(phase % 2 == 0, 1.0, 0.7).astype(np.float32)
    image[inside] = colour * shade[inside][:, None]


def _make_split(
    rng: np.random.Generator,
    n_images: int,
    size: int,
    first_file: int,
    root: Path,
    with_annotations: bool,
    max_objects: int,
    radius: tuple[float, float],
    noise: float,
) -> dict:
    images, annotations = [], []
    for i in range(n_images):
        g = first_file + i
        file_name = f"batch_{g % 3 + 1:02d}_vt/{g:04d}.jpg"
        info = {"file_name": file_name, "height": size, "width": size, "id": i}
        images.append({"license": 0, "url": None, "date_captured": None, **info})

        image = _background(rng, size, noise)
        n_objects = 0 if i % 7 == 3 else int(rng.integers(1, max_objects + 1))
        objects = []
        for k in range(n_objects):
            # The first class cycles so every class appears even in small splits.
            cls = (i % 11) + 1 if k == 0 else int(rng.integers(1, 12))
            r = rng.uniform(radius[0], radius[1]) * size
            if k == 1 and i % 5 == 1:
                # Guarantee overlaps: put the second object on the first one's rim.
                cx, cy, r0 = objects[0][1], objects[0][2], objects[0][3]
                angle = rng.uniform(0, 2 * math.pi)
                centre = (cx + 0.8 * r0 * math.cos(angle), cy + 0.8 * r0 * math.sin(angle))
            else:
                centre = (rng.uniform(0.1, 0.9) * size, rng.uniform(0.1, 0.9) * size)
            objects.append((cls, centre[0], centre[1], r, _polygon(rng, cls, centre, r, size)))

        for cls, _, _, _, points in sorted(objects, key=lambda o: o[0]):
            _paint(image, rng, cls, points)
        image += rng.normal(0.0, 6.0 * noise, image.shape).astype(np.float32)
        rgb = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        path = root / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise OSError(f"could not write {path}")

        if with_annotations:
            # Annotation order is shuffled: the mask rule must not depend on it.
            for j in rng.permutation(len(objects)):
                cls, _, _, _, points = objects[j]
                xs, ys = points[:, 0].astype(float), points[:, 1].astype(float)
                area = 0.5 * abs(float(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))
                annotations.append(
                    {
                        "id": len(annotations),
                        "image_id": i,
                        "category_id": cls - 1,
                        "segmentation": [[float(v) for v in points.reshape(-1)]],
                        "area": round(area, 1),
                        "bbox": [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()],
                        "iscrowd": 0,
                    }
                )
    return {"images": images, "annotations": annotations}


def _categories() -> list[dict]:
    return [{"id": i, "name": name, "supercategory": name} for i, name in enumerate(CATEGORY_NAMES)]


def _write_json(path: Path, split: dict) -> None:
    data = {
        "info": {"description": "ledger synthetic demo data", "version": str(DEMO_VERSION)},
        "licenses": [{"id": 0, "name": "CC BY 4.0", "url": None}],
        "images": split["images"],
        "categories": _categories(),
        "annotations": split["annotations"],
    }
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _merge(first: dict, second: dict) -> dict:
    images = [dict(img) for img in first["images"]]
    annotations = [dict(ann) for ann in first["annotations"]]
    offset = len(images)
    for img in second["images"]:
        images.append({**img, "id": img["id"] + offset})
    for ann in second["annotations"]:
        annotations.append({**ann, "id": len(annotations), "image_id": ann["image_id"] + offset})
    return {"images": images, "annotations": annotations}


def make_demo_dataset(
    root: Path,
    *,
    n_train: int = 48,
    n_val: int = 16,
    n_test: int = 8,
    size: int = 128,
    seed: int = 0,
    max_objects: int = 4,
    radius: tuple[float, float] = (0.09, 0.2),
    noise: float = 1.0,
) -> Path:
    """Write a deterministic synthetic data set in the competition's layout.

    Args:
        root: folder to write ``train.json``, ``val.json``, ``train_all.json``,
            ``test.json`` and the ``batch_0k_vt/`` image folders into.
        n_train, n_val, n_test: images per split.
        size: image side in pixels (the competition's is 512).
        seed: each split draws from its own generator seeded with (seed, split).
        max_objects: a non-empty image has 1..max_objects objects (the competition
            averages 8 annotations per image; 18 gives about that).
        radius: an object's radius is drawn from this range, as a fraction of the side.
        noise: scales the background texture and the pixel noise (1.0 as generated first).

    Returns:
        ``root``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    counts = {"train": n_train, "val": n_val, "test": n_test}
    splits, first_file = {}, 0
    for number, (name, n) in enumerate(counts.items()):
        rng = np.random.default_rng([seed, number])
        with_annotations = name != "test"
        splits[name] = _make_split(rng, n, size, first_file, root, with_annotations, max_objects, radius, noise)
        first_file += n
    _write_json(root / "train.json", splits["train"])
    _write_json(root / "val.json", splits["val"])
    _write_json(root / "train_all.json", _merge(splits["train"], splits["val"]))
    _write_json(root / "test.json", splits["test"])
    return root


def demo_data_dir(
    cache_root: Path,
    *,
    n_train: int = 48,
    n_val: int = 16,
    n_test: int = 8,
    size: int = 128,
    seed: int = 0,
    max_objects: int = 4,
    radius: tuple[float, float] = (0.09, 0.2),
    noise: float = 1.0,
) -> Path:
    """The demo data set for these parameters, generated on first use and then reused.

    Args:
        cache_root: the cache folder (the ledger passes ``$LEDGER_CACHE``, see ``ledger.core.config``).
        n_train, n_val, n_test, size, seed, max_objects, radius, noise: as for ``make_demo_dataset``.
    """
    base = Path(cache_root)
    key = f"v{DEMO_VERSION}-train{n_train}-val{n_val}-test{n_test}-size{size}-seed{seed}"
    if (max_objects, tuple(radius), noise) != (4, (0.09, 0.2), 1.0):
        key += f"-objects{max_objects}-radius{radius[0]:g}-{radius[1]:g}-noise{noise:g}"
    target = base / "demo" / key
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built aside and renamed in one step: a half-written folder never has the final name.
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=target.parent))
    try:
        make_demo_dataset(tmp, n_train=n_train, n_val=n_val, n_test=n_test, size=size, seed=seed,
                          max_objects=max_objects, radius=tuple(radius), noise=noise)
        os.rename(tmp, target)
    except OSError:
        if not target.is_dir():
            raise
        # Another process finished the same build first; its copy is identical.
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target
