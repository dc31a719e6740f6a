"""Losses: focal, label smoothing and multi-loss as the original runs computed them."""

import math

import pytest

torch = pytest.importorskip("torch")

from conftest import make_job  # noqa: E402
from reproduce.losses import SUPPORTED_CRITERIA, FocalLoss, build_loss  # noqa: E402




def batch(seed=0, n=2, c=12, size=16):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, size, size, generator=g) * 3
    target = torch.randint(0, c, (n, size, size), generator=g)
    return logits, target


def test_cross_entropy_is_torch_cross_entropy():
    train, val = build_loss(make_job(criterion1="cross_entropy"))
    logits, target = batch()
    expected = torch.nn.functional.cross_entropy(logits, target)
    assert torch.equal(train(logits, target), expected)
    assert val is train


def test_focal_matches_hand_computation_on_two_pixels():
    # One image, two classes, 1x2 pixels: p_t = softmax picked at the target.
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])
    target = torch.tensor([[[0, 0]]])
    p0 = math.exp(2) / (math.exp(2) + 1)  # pixel 0, class 0
    p1 = 1 / (1 + math.e)  # pixel 1, class 0
    gamma = 2.0
    expected = (-((1 - p0) ** gamma) * math.log(p0) - ((1 - p1) ** gamma) * math.log(p1)) / 2
    loss = FocalLoss(gamma)(logits, target)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_focal_uses_job_gamma_and_down_weights_easy_pixels():
    logits, target = batch(1)
    ce = torch.nn.functional.cross_entropy(logits, target)
    train, _ = build_loss(make_job(criterion1="focal", focal_gamma=0.5))
    assert train.gamma == 0.5
    assert 0 < train(logits, target).item() < ce.item()


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, target = batch(2)
    train, _ = build_loss(make_job(criterion1="focal", focal_gamma=0.0))
    expected = torch.nn.functional.cross_entropy(logits, target)
    torch.testing.assert_close(train(logits, target), expected, rtol=1e-6, atol=1e-7)


def test_label_smoothing_matches_formula_and_is_ce_at_zero():
    logits, target = batch(3)
    eps, classes = 0.05, logits.shape[1]
    log_p = torch.log_softmax(logits, dim=1)
    nll = -log_p.gather(1, target.unsqueeze(1)).mean()
    uniform = -log_p.sum(dim=1).mean()
    train, _ = build_loss(make_job(criterion1="label_smoothing", smooth_factor=eps))
    torch.testing.assert_close(train(logits, target), (1 - eps) * nll + eps / classes * uniform)

    plain, _ = build_loss(make_job(criterion1="label_smoothing", smooth_factor=0.0))
    torch.testing.assert_close(plain(logits, target), torch.nn.functional.cross_entropy(logits, target))


def test_dice_is_multiclass_and_small_for_perfect_prediction():
    _, target = batch(4)
    perfect = torch.nn.functional.one_hot(target, 12).permute(0, 3, 1, 2).float() * 50
    train, _ = build_loss(make_job(criterion1="dice"))
    assert train(perfect, target).item() < 1e-3
    assert train(-perfect, target).item() > 0.5


def test_multi_loss_is_weighted_sum_and_validation_uses_criterion1():
    logits, target = batch(5)
    job = make_job(
        criterion1="focal", criterion2="dice", multi_loss=True, loss_weights=(0.3, 0.7), focal_gamma=0.5
    )
    train, val = build_loss(job)
    focal = FocalLoss(0.5)(logits, target)
    dice, _ = build_loss(make_job(criterion1="dice"))
    torch.testing.assert_close(train(logits, target), 0.3 * focal + 0.7 * dice(logits, target))
    torch.testing.assert_close(val(logits, target), focal)


def test_criterion2_is_ignored_without_multi_loss():
    logits, target = batch(6)
    train, val = build_loss(make_job(criterion1="cross_entropy", criterion2="dice", multi_loss=False))
    torch.testing.assert_close(train(logits, target), torch.nn.functional.cross_entropy(logits, target))
    assert val is train


def test_unknown_criterion_names_key_and_supported_values():
    with pytest.raises(ValueError) as err:
        build_loss(make_job(criterion1="lovasz"))
    message = str(err.value)
    assert "criterion1" in message and "'lovasz'" in message
    assert all(name in message for name in SUPPORTED_CRITERIA)
    with pytest.raises(ValueError, match="criterion2"):
        build_loss(make_job(criterion2="nope", multi_loss=True))
    with pytest.raises(ValueError, match="criterion2"):
        build_loss(make_job(criterion2=None, multi_loss=True))


def test_losses_backpropagate():
    logits, target = batch(7)
    logits.requires_grad_(True)
    job = make_job(criterion1="label_smoothing", criterion2="focal", multi_loss=True, focal_gamma=0.5)
    train, _ = build_loss(job)
    train(logits, target).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
