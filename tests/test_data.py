import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from reproduce import data as data_module
from reproduce.data import (
    CATEGORY_NAMES,
    DataError,
    MaskCache,
    category_index,
    data_fingerprint,
    load_coco,
    rasterize_mask,
    validate_data_dir,
)
from reproduce.demo import demo_data_dir, make_demo_dataset
from reproduce.metrics import CLASS_NAMES, ValMIoU

# Category ids deliberately not 1..11: the class index is the POSITION in the list + 1.
CATEGORIES = [{"id": 10, "name": "UNKNOWN"}, {"id": 3, "name": "General trash"}, {"id": 7, "name": "Paper"}]
H, W = 12, 20


def rle(mask: np.ndarray) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(encoded["size"]), "counts": encoded["counts"].decode("ascii")}


def box(y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def make_coco_dir(root: Path, annotations: list[tuple[int, int, np.ndarray]], n_images: int = 3) -> Path:
    """A tiny COCO folder: n_images images of HxW, annotations (image_id, category_id, mask)."""
    root.mkdir(parents=True, exist_ok=True)
    images = []
    rng = np.random.default_rng(0)
    for i in range(n_images):
        name = f"batch_01_vt/{i:04d}.jpg"
        (root / "batch_01_vt").mkdir(exist_ok=True)
        cv2.imwrite(str(root / name), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        images.append({"id": i, "file_name": name, "height": H, "width": W})
    anns = [
        {"id": k, "image_id": img, "category_id": cat, "segmentation": rle(m), "iscrowd": 0}
        for k, (img, cat, m) in enumerate(annotations)
    ]
    split = {"images": images, "annotations": anns, "categories": CATEGORIES}
    for name in ("train.json", "val.json"):
        (root / name).write_text(json.dumps(split))
    return root


LOW, HIGH = box(0, 8, 0, 12), box(4, 12, 6, 20)  # overlap: rows 4..7, cols 6..11


@pytest.fixture
def coco_dir(tmp_path):
    # Image 0: "Paper" (class 3) listed before "UNKNOWN" (class 1). Image 1: the reverse.
    # Image 2: no annotations.
    return make_coco_dir(tmp_path / "data", [(0, 7, HIGH), (0, 10, LOW), (1, 10, LOW), (1, 7, HIGH)])


# --- rasterisation ---------------------------------------------------------------


def test_class_index_is_position_in_categories():
    coco = load_coco_from(CATEGORIES)
    assert category_index(coco) == {10: 1, 3: 2, 7: 3}


def load_coco_from(categories):
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {"images": [], "annotations": [], "categories": categories}
    coco.createIndex()
    return coco


def test_overlap_goes_to_higher_class_whatever_the_order(coco_dir):
    coco = load_coco(coco_dir / "train.json")
    cat_index = category_index(coco)
    first, second = rasterize_mask(coco, 0, cat_index), rasterize_mask(coco, 1, cat_index)
    assert np.array_equal(first, second)
    expected = np.zeros((H, W), np.uint8)
    expected[LOW] = 1  # category id 10 is first in the list
    expected[HIGH] = 3  # category id 7 is third
    assert np.array_equal(first, expected)
    assert first.dtype == np.uint8 and first[5, 8] == 3


def test_image_without_annotations_is_all_background(coco_dir):
    coco = load_coco(coco_dir / "train.json")
    mask = rasterize_mask(coco, 2, category_index(coco))
    assert mask.shape == (H, W) and not mask.any()


def test_polygon_annotation_is_rasterised(tmp_path):
    root = make_coco_dir(tmp_path / "d", [])
    split = json.loads((root / "train.json").read_text())
    polygon = [[2, 2, 10, 2, 10, 8, 2, 8]]
    split["annotations"] = [{"id": 0, "image_id": 0, "category_id": 3, "segmentation": polygon, "iscrowd": 0}]
    (root / "train.json").write_text(json.dumps(split))
    coco = load_coco(root / "train.json")
    mask = rasterize_mask(coco, 0, category_index(coco))
    assert set(np.unique(mask)) == {0, 2}
    assert mask[5, 5] == 2 and mask[0, 0] == 0 and mask[11, 19] == 0


# --- mask cache --------------------------------------------------------------------


def test_cache_gives_the_rasterised_masks_and_is_reused(coco_dir, tmp_path, monkeypatch):
    cache = MaskCache.load_or_build(coco_dir / "train.json", tmp_path / "cache")
    assert cache.path.parent == tmp_path / "cache" / "masks"
    coco = load_coco(coco_dir / "train.json")
    for i, image_id in enumerate(sorted(coco.getImgIds())):
        assert np.array_equal(cache.get(i), rasterize_mask(coco, image_id, category_index(coco)))
    assert isinstance(cache.masks, np.memmap)

    def no_rebuild(self, coco):
        raise AssertionError("cache rebuilt although it exists")

    monkeypatch.setattr(MaskCache, "_build", no_rebuild)
    again = MaskCache.load_or_build(coco_dir / "train.json", tmp_path / "cache")
    assert np.array_equal(np.asarray(again.masks), np.asarray(cache.masks))


def test_changed_annotation_file_gets_a_new_cache(coco_dir, tmp_path):
    before = MaskCache.load_or_build(coco_dir / "train.json", tmp_path / "cache")
    make_coco_dir(coco_dir, [(2, 3, box(0, 3, 0, 3))])
    after = MaskCache.load_or_build(coco_dir / "train.json", tmp_path / "cache")
    assert after.key != before.key and after.path != before.path
    assert after.get(2)[0, 0] == 2 and not after.get(0).any()
    assert before.get(0).any()  # the old file is untouched


def test_damaged_cache_is_rebuilt(coco_dir, tmp_path):
    cache = MaskCache.load_or_build(coco_dir / "train.json", tmp_path / "cache")
    good = np.array(cache.masks)
    cache.path.write_bytes(cache.path.read_bytes()[:100])
    rebuilt = MaskCache.load_or_build(coco_dir / "train.json", tmp_path / "cache")
    assert np.array_equal(np.asarray(rebuilt.masks), good)


def test_interrupted_build_leaves_no_cache_file(coco_dir, tmp_path, monkeypatch):
    calls = []

    def failing(coco, image_id, cat_index):
        calls.append(image_id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return np.zeros((H, W), np.uint8)

    monkeypatch.setattr(data_module, "rasterize_mask", failing)
    with pytest.raises(KeyboardInterrupt):
        MaskCache.load_or_build(coco_dir / "train.json", tmp_path / "cache")
    assert list((tmp_path / "cache" / "masks").iterdir()) == []


def test_pickled_cache_does_not_carry_the_array(coco_dir, tmp_path):
    import pickle

    cache = MaskCache.load_or_build(coco_dir / "train.json", tmp_path / "cache")
    cache.get(0)
    blob = pickle.dumps(cache)
    assert len(blob) < 2000
    assert np.array_equal(pickle.loads(blob).get(0), cache.get(0))


# --- validate_data_dir ----------------------------------------------------------------


def test_valid_folder_passes(coco_dir):
    validate_data_dir(coco_dir)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        validate_data_dir(tmp_path / "nope")


def test_missing_split(coco_dir):
    (coco_dir / "val.json").unlink()
    with pytest.raises(DataError, match="val.json is missing"):
        validate_data_dir(coco_dir)


def test_missing_image_files_are_named(coco_dir):
    (coco_dir / "batch_01_vt" / "0001.jpg").unlink()
    with pytest.raises(DataError, match=r"1 missing image file \(batch_01_vt/0001.jpg\)"):
        validate_data_dir(coco_dir)


def test_many_missing_images_are_summarised(tmp_path):
    root = make_coco_dir(tmp_path / "d", [], n_images=6)
    for path in (root / "batch_01_vt").iterdir():
        path.unlink()
    with pytest.raises(DataError, match="6 missing image files .*0000.jpg.* and 3 more"):
        validate_data_dir(root)


def test_unknown_category(tmp_path):
    root = make_coco_dir(tmp_path / "d", [(0, 99, LOW)])
    with pytest.raises(DataError, match="category_id 99"):
        validate_data_dir(root)


def test_unknown_image_id(tmp_path):
    root = make_coco_dir(tmp_path / "d", [(42, 10, LOW)])
    with pytest.raises(DataError, match="unknown image_id.*42"):
        validate_data_dir(root)


def test_invalid_json(coco_dir):
    (coco_dir / "train.json").write_text("{not json")
    with pytest.raises(DataError, match="train.json is not valid JSON"):
        validate_data_dir(coco_dir)


def test_test_split_is_optional_but_checked_when_present(coco_dir):
    validate_data_dir(coco_dir)
    split = json.loads((coco_dir / "train.json").read_text())
    split["images"].append({"id": 9, "file_name": "batch_02_vt/gone.jpg", "height": H, "width": W})
    (coco_dir / "test.json").write_text(json.dumps(split))
    with pytest.raises(DataError, match="test.json.*gone.jpg"):
        validate_data_dir(coco_dir)


# --- fingerprint -------------------------------------------------------------------


def test_fingerprint_is_stable_and_sees_changes(coco_dir):
    first = data_fingerprint(coco_dir)
    assert first == data_fingerprint(coco_dir)
    assert set(first["splits"]) == {"train.json", "val.json"}
    assert first["splits"]["train.json"]["images"] == 3
    assert first["total_images"] == 3  # the same files in both splits count once
    make_coco_dir(coco_dir, [(0, 10, LOW)])
    second = data_fingerprint(coco_dir)
    assert second["splits"]["train.json"]["sha256"] != first["splits"]["train.json"]["sha256"]


# --- the dataset ---------------------------------------------------------------------

torch_marker = pytest.mark.torch


@torch_marker
@pytest.mark.parametrize("scale", ["divide255", "uint8"])
@pytest.mark.parametrize("cached", [True, False])
def test_dataset_items(coco_dir, tmp_path, scale, cached):
    torch = pytest.importorskip("torch")
    from reproduce.data import SegmentationDataset

    cache = MaskCache.load_or_build(coco_dir / "train.json", tmp_path / "c") if cached else None
    ds = SegmentationDataset(coco_dir, "train.json", scale=scale, mode="train", mask_cache=cache)
    assert len(ds) == 3
    image, mask, info = ds[0]
    assert image.shape == (3, H, W) and image.dtype == torch.float32
    assert mask.shape == (H, W) and mask.dtype == torch.int64
    assert info["file_name"] == "batch_01_vt/0000.jpg"
    assert int(mask[5, 8]) == 3
    rgb = cv2.cvtColor(cv2.imread(str(coco_dir / info["file_name"])), cv2.COLOR_BGR2RGB)
    expected = rgb.astype(np.float32) / 255.0 if scale == "divide255" else rgb.astype(np.float32)
    assert np.allclose(image.numpy().transpose(1, 2, 0), expected)


@torch_marker
def test_dataset_with_albumentations_normalize(coco_dir):
    torch = pytest.importorskip("torch")
    A = pytest.importorskip("albumentations")
    from albumentations.pytorch import ToTensorV2

    from reproduce.data import SegmentationDataset

    transform = A.Compose([A.Normalize(mean=(0.5,) * 3, std=(0.25,) * 3, max_pixel_value=255), ToTensorV2()])
    ds = SegmentationDataset(
        coco_dir, "val.json", transform=transform, scale="uint8", mode="val", mask_cache=None
    )
    image, mask, _ = ds[1]
    assert image.dtype == torch.float32 and image.shape == (3, H, W)
    assert float(image.min()) >= -2.0 - 1e-6 and float(image.max()) <= 2.0 + 1e-6
    assert mask.dtype == torch.int64 and int(mask[5, 8]) == 3


@torch_marker
def test_dataset_test_mode_and_max_images(coco_dir, tmp_path):
    pytest.importorskip("torch")
    from reproduce.data import SegmentationDataset

    ds = SegmentationDataset(
        coco_dir, "val.json", scale="divide255", mode="test", mask_cache=None, max_images=2
    )
    assert len(ds) == 2
    item = ds[1]
    assert len(item) == 2 and item[0].shape == (3, H, W) and item[1]["image_id"] == 1


@torch_marker
def test_dataset_rejects_cache_of_another_file(coco_dir, tmp_path):
    pytest.importorskip("torch")
    from reproduce.data import SegmentationDataset

    cache = MaskCache.load_or_build(coco_dir / "train.json", tmp_path / "c")
    make_coco_dir(coco_dir, [(0, 3, LOW)])
    with pytest.raises(ValueError, match="another file"):
        SegmentationDataset(coco_dir, "train.json", scale="uint8", mode="train", mask_cache=cache)


def test_importing_data_does_not_import_torch():
    code = "import sys, reproduce.data, reproduce.demo, reproduce.metrics; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- the synthetic demo set -----------------------------------------------------------


@pytest.fixture(scope="module")
def demo(cache_dir) -> Path:
    # The default demo set, shared with every other test through the session cache.
    return demo_data_dir(cache_dir)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_demo_is_deterministic(tmp_path):
    a = make_demo_dataset(tmp_path / "a", n_train=6, n_val=2, n_test=2, size=64, seed=3)
    b = make_demo_dataset(tmp_path / "b", n_train=6, n_val=2, n_test=2, size=64, seed=3)
    c = make_demo_dataset(tmp_path / "c", n_train=6, n_val=2, n_test=2, size=64, seed=4)
    assert _files(a) == _files(b)
    assert _files(a) != _files(c)


def test_demo_layout_is_valid(demo):
    validate_data_dir(demo, ("train.json", "val.json", "train_all.json", "test.json"))
    train = json.loads((demo / "train.json").read_text())
    assert [c["name"] for c in train["categories"]] == list(CATEGORY_NAMES) == list(CLASS_NAMES[1:])
    assert [c["id"] for c in train["categories"]] == list(range(11))
    assert [img["id"] for img in train["images"]] == list(range(48))
    assert train["images"][1]["file_name"].startswith("batch_0") and "_vt/" in train["images"][1]["file_name"]
    assert all(isinstance(a["segmentation"], list) and a["iscrowd"] == 0 for a in train["annotations"])
    fingerprint = data_fingerprint(demo)
    assert fingerprint["splits"]["train_all.json"]["images"] == 64
    assert fingerprint["total_images"] == 72


def test_demo_has_classes_overlaps_and_empty_images(demo):
    coco = load_coco(demo / "train.json")
    cat_index = category_index(coco)
    classes, overlaps, empty = set(), 0, 0
    for image_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        mask = rasterize_mask(coco, image_id, cat_index)
        classes.update(np.unique(mask).tolist())
        if not anns:
            empty += 1
            assert not mask.any()
        elif sum(coco.annToMask(a).astype(int) for a in anns).max() > 1:
            overlaps += 1
    assert classes == set(range(12))
    assert overlaps >= 3 and empty >= 3


def _pixels(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    coco = load_coco(root / split)
    cat_index = category_index(coco)
    images, masks = [], []
    for image_id in sorted(coco.getImgIds()):
        bgr = cv2.imread(str(root / coco.imgs[image_id]["file_name"]))
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        masks.append(rasterize_mask(coco, image_id, cat_index))
    return np.stack(images).astype(np.float64), np.stack(masks)


def test_demo_masks_are_learnable(demo):
    x_train, y_train = _pixels(demo, "train.json")
    x_val, y_val = _pixels(demo, "val.json")
    centroids = np.stack([x_train[y_train == c].mean(axis=0) for c in range(12)])
    pred = ((x_val[..., None, :] - centroids) ** 2).sum(axis=-1).argmin(axis=-1)
    learned, constant = ValMIoU(), ValMIoU()
    learned.update(pred, y_val)
    constant.update(np.zeros_like(y_val), y_val)
    assert constant.compute()["miou"] < 0.15
    assert learned.compute()["miou"] > 0.5


def test_demo_data_dir_builds_once(tmp_path, monkeypatch):
    from reproduce import demo as demo_module

    from ledger.core import config

    monkeypatch.setenv("LEDGER_CACHE", str(tmp_path / "env-cache"))
    first = demo_data_dir(config.cache_dir(), n_train=3, n_val=1, n_test=1, size=32)
    assert first.is_relative_to(tmp_path / "env-cache") and (first / "train.json").is_file()
    validate_data_dir(first)

    def no_rebuild(*args, **kwargs):
        raise AssertionError("regenerated although cached")

    monkeypatch.setattr(demo_module, "make_demo_dataset", no_rebuild)
    assert demo_data_dir(config.cache_dir(), n_train=3, n_val=1, n_test=1, size=32) == first
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temp folder left
    with pytest.raises(AssertionError):
        demo_data_dir(config.cache_dir(), n_train=3, n_val=1, n_test=1, size=32, seed=1)  # another key


def test_demo_data_dir_failed_build_leaves_nothing(tmp_path, monkeypatch):
    from reproduce import demo as demo_module

    def broken(root, **kwargs):
        (Path(root) / "train.json").write_text("partial")
        raise OSError("disk full")

    monkeypatch.setattr(demo_module, "make_demo_dataset", broken)
    with pytest.raises(OSError, match="disk full"):
        demo_data_dir(tmp_path, size=32)
    assert list((tmp_path / "demo").iterdir()) == []
