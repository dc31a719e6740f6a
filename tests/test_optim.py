"""Optimisers and the cosine schedule, including the first commit's per-batch T_max=2."""

import math

import pytest

torch = pytest.importorskip("torch")

from conftest import make_job  # noqa: E402
from reproduce.optim import (  # noqa: E402
    SUPPORTED_CRITERIA,
    SUPPORTED_OPTIMIZERS,
    SUPPORTED_SCHEDULERS,
    build_optimizer,
    build_scheduler,
)




def params():
    return torch.nn.Linear(3, 2).parameters()


def test_supported_names():
    assert SUPPORTED_OPTIMIZERS == ("MADGRAD", "Adam", "AdamW", "SGD")
    assert SUPPORTED_SCHEDULERS == ("CosineAnnealingLR",)
    assert set(SUPPORTED_CRITERIA) == {"cross_entropy", "focal", "label_smoothing", "dice"}


def test_madgrad_gets_lr_and_weight_decay_only():
    from madgrad import MADGRAD

    opt = build_optimizer(make_job(optimizer="MADGRAD", lr=5e-5, weight_decay=1e-4, momentum=0.5), params())
    assert type(opt) is MADGRAD
    group = opt.param_groups[0]
    assert group["lr"] == 5e-5 and group["weight_decay"] == 1e-4
    # The package defaults, not the job's (SGD-only) momentum.
    assert group["momentum"] == 0.9 and group["eps"] == 1e-6
    assert group.get("decouple_decay", False) is False


@pytest.mark.parametrize(
    "name, cls",
    [("Adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("ADAM", torch.optim.Adam), ("madgrad", None)],
)
def test_names_are_case_insensitive(name, cls):
    opt = build_optimizer(make_job(optimizer=name, lr=1e-3, weight_decay=0.01), params())
    if cls is not None:
        assert type(opt) is cls
    assert opt.param_groups[0]["lr"] == 1e-3 and opt.param_groups[0]["weight_decay"] == 0.01


def test_sgd_uses_job_momentum():
    opt = build_optimizer(make_job(optimizer="SGD", lr=0.1, weight_decay=1e-4, momentum=0.9), params())
    assert type(opt) is torch.optim.SGD
    group = opt.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["momentum"]) == (0.1, 1e-4, 0.9)


def test_unknown_optimizer_lists_supported():
    with pytest.raises(ValueError) as err:
        build_optimizer(make_job(optimizer="Lion"), params())
    assert "'Lion'" in str(err.value)
    assert all(name in str(err.value) for name in SUPPORTED_OPTIMIZERS)


def cosine(base, eta_min, t, t_max):
    return eta_min + (base - eta_min) * (1 + math.cos(math.pi * t / t_max)) / 2


def lrs_after_steps(job, steps):
    opt = build_optimizer(job, params())
    sched = build_scheduler(job, opt)
    out = [opt.param_groups[0]["lr"]]
    for _ in range(steps):
        opt.step()
        sched.step()
        out.append(opt.param_groups[0]["lr"])
    return out


def test_cosine_follows_closed_form():
    job = make_job(lr=1e-4, t_max=10, eta_min=1e-6)
    for t, lr in enumerate(lrs_after_steps(job, 10)):
        assert lr == pytest.approx(cosine(1e-4, 1e-6, t, 10), rel=1e-9, abs=1e-15)


def test_cosine_t_max_2_per_batch_goes_back_up():
    # The first commit stepped T_max=2 after every batch: the lr oscillates with period 4.
    lrs = lrs_after_steps(make_job(lr=1e-4, t_max=2, eta_min=0.0), 6)
    expected = [1e-4, 5e-5, 0.0, 5e-5, 1e-4, 5e-5, 0.0]
    assert lrs == pytest.approx(expected, abs=1e-12)
    assert lrs[3] > lrs[2] and lrs[4] > lrs[3]


def test_no_scheduler_and_unknown_scheduler():
    opt = build_optimizer(make_job(), params())
    assert build_scheduler(make_job(scheduler=None), opt) is None
    assert type(build_scheduler(make_job(scheduler="cosineannealinglr"), opt)).__name__ == "CosineAnnealingLR"
    with pytest.raises(ValueError, match="StepLR.*CosineAnnealingLR"):
        build_scheduler(make_job(scheduler="StepLR"), opt)
