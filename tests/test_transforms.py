"""Augmentation pipelines of each code state, with albumentations 0.5.2's behaviour."""

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("albumentations")

from conftest import make_job  # noqa: E402
from reproduce.transforms import build_transforms, equalize_luma  # noqa: E402


# The three code states' pipelines (PROVENANCE.md, "Augmentation and CutMix").
NO_AUG = {}
AUG_12E9E30 = dict(hflip_p=0.3, rotate_p=0.3, brightness_contrast_p=0.3, augment_mask=False)
AUG_4826A70 = dict(
    input_scale="uint8", hflip_p=0.5, rotate_p=0.5, brightness_contrast_p=0.5, cutout_p=0.5,
    clahe_p=0.5, normalize_mean=(0.5, 0.5, 0.5), normalize_std=(0.25, 0.25, 0.25),
)  # fmt: skip
SIZE = 64



def uint8_image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def float_image(seed=0):
    return uint8_image(seed).astype(np.float32) / 255.0


def label_mask(seed=0):
    return np.random.default_rng(seed + 100).integers(0, 12, (SIZE, SIZE)).astype(np.int64)


def image_of(out):
    return out["image"].numpy().transpose(1, 2, 0)


@pytest.mark.parametrize(
    "state, image",
    [(NO_AUG, float_image), (AUG_12E9E30, float_image), (AUG_4826A70, uint8_image)],
    ids=["none", "12e9e30", "4826a70"],
)
@pytest.mark.parametrize("train", [True, False])
def test_code_state_pipelines_give_tensors(state, image, train):
    t = build_transforms(make_job(**state), train=train, seed=0)
    for i in range(4):
        out = t(image=image(i), mask=label_mask(i))
        assert out["image"].dtype == torch.float32 and out["image"].shape == (3, SIZE, SIZE)
        assert out["mask"].dtype == torch.int64 and out["mask"].shape == (SIZE, SIZE)
        assert set(out["mask"].unique().tolist()) <= set(range(12))
    test_item = t(image=image(9))
    assert set(test_item) == {"image"} and test_item["image"].shape == (3, SIZE, SIZE)


def test_no_augmentation_only_converts():
    img, mask = float_image(), label_mask()
    out = build_transforms(make_job(), train=True, seed=0)(image=img, mask=mask)
    np.testing.assert_array_equal(image_of(out), img)
    np.testing.assert_array_equal(out["mask"].numpy(), mask)


def test_validation_has_no_augmentation_even_when_training_does():
    img, mask = uint8_image(), label_mask()
    t = build_transforms(make_job(**{**AUG_4826A70, "hflip_p": 1.0, "rotate_p": 1.0}), train=False, seed=0)
    out = t(image=img, mask=mask)
    np.testing.assert_allclose(image_of(out), (img - 127.5) / 63.75, rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(out["mask"].numpy(), mask)


def test_normalize_numbers():
    img = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    img[0, 0] = (0, 51, 255)
    job = make_job(input_scale="uint8", normalize_mean=(0.5,) * 3, normalize_std=(0.25,) * 3)
    t = build_transforms(job, train=False, seed=0)
    out = image_of(t(image=img))
    # (x - 0.5 * 255) / (0.25 * 255)
    np.testing.assert_allclose(out[0, 0], [-2.0, -1.2, 2.0], rtol=1e-6)
    assert out[5, 5, 0] == pytest.approx(-2.0)


@pytest.mark.parametrize("augment_mask", [True, False])
def test_flip_moves_mask_only_when_augment_mask(augment_mask):
    img, mask = uint8_image(), label_mask()
    job = make_job(input_scale="uint8", hflip_p=1.0, augment_mask=augment_mask)
    t = build_transforms(job, train=True, seed=0)
    out = t(image=img, mask=mask)
    np.testing.assert_array_equal(image_of(out), img[:, ::-1].astype(np.float32))
    expected_mask = mask[:, ::-1] if augment_mask else mask
    np.testing.assert_array_equal(out["mask"].numpy(), expected_mask)


def test_rotate_reflects_border_and_rotates_mask_with_nearest():
    bright = np.full((SIZE, SIZE, 3), 200, dtype=np.uint8)
    mask = np.zeros((SIZE, SIZE), dtype=np.int64)
    mask[:, : SIZE // 2] = 3
    mask[:, SIZE // 2 :] = 7
    t = build_transforms(make_job(input_scale="uint8", rotate_p=1.0), train=True, seed=0)
    moved = 0
    for _ in range(5):
        out = t(image=bright, mask=mask)
        # BORDER_REFLECT_101: no black corners (2.x's default constant border would give them).
        assert (image_of(out) == 200).all()
        rotated = out["mask"].numpy()
        assert set(np.unique(rotated)) <= {3, 7}  # nearest, reflected border: no fill value 0
        moved += int(not np.array_equal(rotated, mask))
    assert moved >= 4


def test_rotate_without_augment_mask_keeps_mask():
    img, mask = uint8_image(), label_mask()
    t = build_transforms(make_job(input_scale="uint8", rotate_p=1.0, augment_mask=False), train=True, seed=0)
    out = t(image=img, mask=mask)
    assert not np.array_equal(image_of(out), img)
    np.testing.assert_array_equal(out["mask"].numpy(), mask)


def union_of_squares_inside(region, side):
    """The union of all side x side squares that lie wholly inside ``region``."""
    inside = np.lib.stride_tricks.sliding_window_view(region, (side, side)).all(axis=(2, 3))
    union = np.zeros_like(region)
    for y, x in zip(*np.nonzero(inside)):
        union[y : y + side, x : x + side] = True
    return union


def test_cutout_makes_four_20x20_black_squares_and_leaves_mask():
    # 128x128 so that four holes are often disjoint.
    bright = np.full((128, 128, 3), 200, dtype=np.uint8)
    mask = np.random.default_rng(0).integers(0, 12, (128, 128))
    t = build_transforms(make_job(input_scale="uint8", cutout_p=1.0), train=True, seed=0)
    disjoint = 0
    for _ in range(10):
        out = t(image=bright, mask=mask)
        img = image_of(out)
        holes = (img == 0).all(axis=2)
        assert ((img == 0) | (img == 200)).all() and (holes == (img == 0).any(axis=2)).all()
        assert np.array_equal(union_of_squares_inside(holes, 20), holes)
        assert 400 <= holes.sum() <= 4 * 400
        disjoint += int(holes.sum() == 4 * 400)
        np.testing.assert_array_equal(out["mask"].numpy(), mask)
    assert disjoint >= 1


def test_brightness_contrast_stays_in_range_on_float_images():
    img = float_image()
    t = build_transforms(make_job(brightness_contrast_p=1.0), train=True, seed=0)
    changed = 0
    for _ in range(5):
        out = image_of(t(image=img))
        assert out.min() >= 0.0 and out.max() <= 1.0  # 0.5.2 clipped float32 to [0, 1]
        changed += int(not np.allclose(out, img))
    assert changed >= 4


def test_same_seed_same_outputs_different_seed_differs():
    job = make_job(**AUG_4826A70)
    first = build_transforms(job, train=True, seed=7)
    second = build_transforms(job, train=True, seed=7)
    other = build_transforms(job, train=True, seed=8)
    differs = 0
    for i in range(6):
        a = first(image=uint8_image(i), mask=label_mask(i))
        b = second(image=uint8_image(i), mask=label_mask(i))
        c = other(image=uint8_image(i), mask=label_mask(i))
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
        differs += int(not torch.equal(a["image"], c["image"]))
    assert differs >= 1

    first.reseed(7)
    again = first(image=uint8_image(0), mask=label_mask(0))
    fresh = build_transforms(job, train=True, seed=7)(image=uint8_image(0), mask=label_mask(0))
    assert torch.equal(again["image"], fresh["image"])


def test_augmentation_decisions_are_independent():
    # albumentations 2.x seeds each transform's own stream identically, which would make
    # the flip and the cutout always fire together on the first item.
    job = make_job(input_scale="uint8", hflip_p=0.5, cutout_p=0.5)
    img = np.full((SIZE, SIZE, 3), 200, dtype=np.uint8)
    img[:, : SIZE // 2] = 100
    decisions = set()
    for seed in range(24):
        out = image_of(build_transforms(job, train=True, seed=seed)(image=img))
        flipped = (out[:, -1] != 0).any() and out[:, -1][out[:, -1, 0] != 0, 0].max() == 100
        cut = (out == 0).any()
        decisions.add((bool(flipped), bool(cut)))
    assert {(True, False), (False, True)} & decisions


def test_clahe_needs_uint8():
    with pytest.raises(ValueError, match="clahe_p.*input_scale"):
        build_transforms(make_job(clahe_p=0.5, input_scale="divide255"), train=True, seed=0)
    t = build_transforms(make_job(clahe_p=1.0, input_scale="uint8"), train=True, seed=0)
    out = image_of(t(image=uint8_image()))
    assert out.shape == (SIZE, SIZE, 3)
    with pytest.raises(TypeError, match="uint8"):
        t(image=float_image())


def test_histogram_equalization_is_preprocessing_for_float_and_uint8():
    low_contrast = (np.random.default_rng(3).integers(100, 130, (SIZE, SIZE, 3))).astype(np.uint8)
    ycrcb = cv2.cvtColor(low_contrast, cv2.COLOR_RGB2YCrCb)
    ycrcb[..., 0] = cv2.equalizeHist(ycrcb[..., 0].copy())
    expected = cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)
    np.testing.assert_array_equal(equalize_luma(low_contrast), expected)
    # On the dataset's uint8 / 255 floats it is the same as equalising before dividing.
    as_float = low_contrast.astype(np.float32) / 255.0
    np.testing.assert_array_equal(equalize_luma(as_float), expected.astype(np.float32) / 255.0)

    for train in (True, False):
        t = build_transforms(make_job(histogram_equalization=True), train=train, seed=0)
        np.testing.assert_array_equal(image_of(t(image=as_float)), expected.astype(np.float32) / 255.0)
