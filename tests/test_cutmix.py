"""CutMix on a stacked batch: the box, the permutation, and how often it fires."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from reproduce.cutmix import cutmix_batch, cutmix_box  # noqa: E402

N, C, H, W = 4, 3, 64, 64


def batch():
    # Every sample is constant and distinct, so each pixel tells where it came from.
    images = torch.arange(N, dtype=torch.float32).view(N, 1, 1, 1).expand(N, C, H, W).clone()
    masks = torch.arange(N, dtype=torch.int64).view(N, 1, 1).expand(N, H, W).clone() + 10
    return images, masks


def replay(seed, prob, beta=1.0):
    """The draws cutmix_batch makes, repeated from the same seed: (order, box)."""
    rng = np.random.default_rng(seed)
    if prob < 1:
        rng.uniform(0, 1)
    lam = rng.beta(beta, beta)
    order = rng.permutation(N)
    return order, cutmix_box(H, W, lam, rng)


def test_pixels_in_box_come_from_permuted_sample_for_image_and_mask():
    images, masks = batch()
    before = (images.clone(), masks.clone())
    mixed, mixed_masks, applied = cutmix_batch(images, masks, prob=1.0, beta=1.0, rng=np.random.default_rng(3))
    assert applied
    order, (y1, y2, x1, x2) = replay(3, prob=1.0)
    assert y2 > y1 and x2 > x1
    inside = torch.zeros(H, W, dtype=torch.bool)
    inside[y1:y2, x1:x2] = True
    for i in range(N):
        assert (mixed[i][:, inside] == float(order[i])).all()
        assert (mixed_masks[i][inside] == order[i] + 10).all()
        assert (mixed[i][:, ~inside] == float(i)).all()
        assert (mixed_masks[i][~inside] == i + 10).all()
    # The caller's batch is not modified.
    assert torch.equal(images, before[0]) and torch.equal(masks, before[1])


def test_same_seed_same_result():
    images, masks = batch()
    a = cutmix_batch(images, masks, prob=0.3, beta=1.0, rng=np.random.default_rng(11))
    b = cutmix_batch(images, masks, prob=0.3, beta=1.0, rng=np.random.default_rng(11))
    assert a[2] == b[2]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_global_numpy_generator_is_the_default():
    images, masks = batch()
    np.random.seed(5)
    a = cutmix_batch(images, masks, prob=1.0, beta=1.0)
    np.random.seed(5)
    b = cutmix_batch(images, masks, prob=1.0, beta=1.0, rng=np.random)
    assert a[2] and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_prob_zero_never_mixes_and_prob_one_always_mixes():
    images, masks = batch()
    rng = np.random.default_rng(0)
    for _ in range(50):
        out_images, out_masks, applied = cutmix_batch(images, masks, prob=0.0, beta=1.0, rng=rng)
        assert not applied and out_images is images and out_masks is masks
    assert all(cutmix_batch(images, masks, prob=1.0, beta=1.0, rng=rng)[2] for _ in range(50))


def test_prob_below_one_uses_uniform_above_one_minus_prob():
    images, masks = batch()
    rng = np.random.default_rng(21)
    applied = [cutmix_batch(images, masks, prob=0.3, beta=1.0, rng=rng)[2] for _ in range(400)]
    assert 0.2 < np.mean(applied) < 0.4
    # The decision is the first draw: uniform(0, 1) > 0.7.
    for seed in range(20):
        first = np.random.default_rng(seed).uniform(0, 1)
        assert cutmix_batch(images, masks, prob=0.3, beta=1.0, rng=np.random.default_rng(seed))[2] == (first > 0.7)


class FixedDraws:
    """A stand-in generator with chosen draws, to put the box where a test wants it."""

    def __init__(self, lam, cx, cy):
        self.lam, self.centres = lam, [cx, cy]

    def uniform(self, low, high):
        return 0.99

    def beta(self, a, b):
        return self.lam

    def permutation(self, n):
        return np.roll(np.arange(n), 1)

    def randint(self, high):
        return self.centres.pop(0)


def test_box_size_and_clipping_at_the_edges():
    # lam 0.75: sqrt(1 - lam) = 0.5, a 32x32 box, half-size 16.
    assert cutmix_box(H, W, 0.75, FixedDraws(0.75, 30, 40)) == (24, 56, 14, 46)
    assert cutmix_box(H, W, 0.75, FixedDraws(0.75, 2, 63)) == (47, 64, 0, 18)
    assert cutmix_box(H, W, 0.0, FixedDraws(0.0, 0, 0)) == (0, 32, 0, 32)
    assert cutmix_box(H, W, 1.0, FixedDraws(1.0, 10, 10)) == (10, 10, 10, 10)

    images, masks = batch()
    mixed, mixed_masks, applied = cutmix_batch(images, masks, prob=0.3, beta=1.0, rng=FixedDraws(0.75, 2, 63))
    assert applied
    order = np.roll(np.arange(N), 1)
    assert (mixed[1, :, 47:, :18] == float(order[1])).all()
    assert (mixed_masks[1, 47:, :18] == order[1] + 10).all()
    assert (mixed[1, :, :47] == 1.0).all() and (mixed[1, :, :, 18:] == 1.0).all()


def test_numpy_batches_work_too():
    images, masks = (t.numpy() for t in batch())
    mixed, mixed_masks, applied = cutmix_batch(images, masks, prob=1.0, beta=1.0, rng=np.random.default_rng(3))
    assert applied and isinstance(mixed, np.ndarray) and isinstance(mixed_masks, np.ndarray)
    torch_mixed, torch_masks, _ = cutmix_batch(*batch(), prob=1.0, beta=1.0, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(mixed, torch_mixed.numpy())
    np.testing.assert_array_equal(mixed_masks, torch_masks.numpy())
