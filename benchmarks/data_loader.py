"""How much the mask cache speeds up SegmentationDataset.

Builds a demo-like data set (synthetic, ``make_demo_dataset``) in a temporary folder,
builds its mask cache, then times full passes over the training split with the cache
and without it (every annotation rasterised again per item, as the original code did).
Same data, same process, passes alternated. A per-step breakdown shows where an item's
time goes, which explains the ratio.

    python benchmarks/data_loader.py --images 64 --size 512 --repeats 3
    python benchmarks/data_loader.py --images 64 --size 512 --repeats 3 --max-objects 18
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from reproduce.data import MaskCache, SegmentationDataset, category_index, load_coco, rasterize_mask
from reproduce.demo import make_demo_dataset


def _pass(dataset) -> float:
    """Samples per second over one full pass."""
    start = time.perf_counter()
    for i in range(len(dataset)):
        dataset[i]
    return len(dataset) / (time.perf_counter() - start)


def _per_item_ms(fn, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return 1000 * (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="training images to generate")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per variant")
    parser.add_argument(
        "--max-objects",
        type=int,
        default=4,
        help="objects per non-empty image: 1..N (4: the demo; 18: ~8 per image like the original)",
    )
    parser.add_argument(
        "--scale", choices=["divide255", "uint8"], default="divide255", help="dataset scale mode"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        data = make_demo_dataset(
            root / "data", n_train=args.images, n_val=0, n_test=0, size=args.size, max_objects=args.max_objects
        )
        generate_s = time.perf_counter() - t0
        ann = data / "train.json"

        t0 = time.perf_counter()
        cache = MaskCache.load_or_build(ann, root / "cache")
        build_s = time.perf_counter() - t0

        cached = SegmentationDataset(data, "train.json", scale=args.scale, mode="train", mask_cache=cache)
        raw = SegmentationDataset(data, "train.json", scale=args.scale, mode="train", mask_cache=None)
        for ds in (cached, raw):  # warm the page cache for JPEGs and the memory map
            _pass(ds)

        rates: dict[str, list[float]] = {"cached": [], "rasterised": []}
        for _ in range(args.repeats):
            rates["cached"].append(_pass(cached))
            rates["rasterised"].append(_pass(raw))

        coco = load_coco(ann)
        cat_index = category_index(coco)
        ids = sorted(coco.getImgIds())
        files = [str(data / coco.imgs[i]["file_name"]) for i in ids]
        n = len(ids)
        breakdown = {
            "JPEG decode + BGR->RGB": _per_item_ms(
                lambda i: cv2.cvtColor(cv2.imread(files[i]), cv2.COLOR_BGR2RGB), n
            ),
            "float32 / 255": _per_item_ms(
                lambda i: np.zeros((args.size, args.size, 3), np.uint8).astype(np.float32) / 255.0, n
            ),
            "mask from cache (copy)": _per_item_ms(lambda i: np.array(cache.get(i)), n),
            "mask rasterised": _per_item_ms(lambda i: rasterize_mask(coco, ids[i], cat_index), n),
        }
        annotations_per_image = len(coco.getAnnIds()) / n

    best = {k: max(v) for k, v in rates.items()}
    median = {k: statistics.median(v) for k, v in rates.items()}
    print(f"data: {n} images {args.size}x{args.size}, {annotations_per_image:.2f} annotations/image,", end=" ")
    print(f"scale={args.scale}")
    print(f"generate {generate_s:.1f} s,", end=" ")
    print(f"mask cache build {build_s:.2f} s ({1000 * build_s / n:.1f} ms/image)")
    print()
    print(f"{'variant':<22}{'best samples/s':>16}{'median samples/s':>18}")
    for name in ("cached", "rasterised"):
        print(f"{name:<22}{best[name]:>16.1f}{median[name]:>18.1f}")
    ratio_best = best["cached"] / best["rasterised"]
    ratio_median = median["cached"] / median["rasterised"]
    print(f"{'ratio cached/raster':<22}{ratio_best:>16.2f}{ratio_median:>18.2f}")
    print()
    print(f"{'per-item step':<26}{'ms':>8}")
    for step, ms in breakdown.items():
        print(f"{step:<26}{ms:>8.2f}")


if __name__ == "__main__":
    main()
