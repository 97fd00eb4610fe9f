"""Tests of the training recipe (visrec.core.train.recipe): optimizers and schedules.

Zero-gamma and the frozen backbone are model matters: tests/core/models/test_factory.py.

Schedules are stepped by hand over a one-layer optimizer and compared, update by update,
with the formulas of timm's and PyTorch's schedulers; optimizers are checked by their
parameter groups and by what one step does to a weight and a bias.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from visrec.core.models import make_classifier
from visrec.core.train import (
    OPTIMIZERS,
    SCHEDULES,
    OptimizerSpec,
    ScheduleSpec,
    make_optimizer,
    make_schedule,
)

LR = 0.1
EPOCHS, UPDATES = 10, 5  # 50 updates in all
WARMUP = 2  # epochs: 10 updates
MIN_LR = 0.001


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- schedules -------------------------------------------------------------------------


def _warmup(u: int) -> float:
    """timm's linear warmup: ``lr / 100`` at update 0, rising by equal steps to ``lr``."""
    start, steps = LR / 100, WARMUP * UPDATES
    return start + u * (LR - start) / steps


def _after_warmup(decay: Callable[[int, int], float]) -> Callable[[int], float]:
    """The warmup, then ``decay(t, span)`` with ``t`` counted from its end (warmup_prefix)."""
    steps, span = WARMUP * UPDATES, (EPOCHS - WARMUP) * UPDATES

    def rate(u: int) -> float:
        return _warmup(u) if u < steps else decay(u - steps, span)

    return rate


def _cosine(t: int, span: int) -> float:
    if t >= span:  # timm: one cycle, then min_lr
        return MIN_LR
    return MIN_LR + 0.5 * (LR - MIN_LR) * (1 + math.cos(math.pi * t / span))


def _linear(t: int, span: int) -> float:
    return MIN_LR + (LR - MIN_LR) * (1 - min(t, span) / span)


def _step(t: int, span: int) -> float:
    # timm StepLRScheduler: lr * rate ** (t // decay_t), t counted from the end of the warmup
    # (warmup_prefix=True): with 3-epoch steps the first decay applies to the first update
    # of epoch 6 (2 warmup + 3 epochs), the update at the boundary already uses it.
    return LR * 0.5 ** (t // (3 * UPDATES))


def _triangle(u: int) -> float:
    """CyclicLR triangular: min_lr at update 0, lr after a half cycle (2 of 4 epochs)."""
    half = 4 * UPDATES / 2
    cycle = math.floor(1 + u / (2 * half))
    x = abs(u / half - 2 * cycle + 1)
    return MIN_LR + (LR - MIN_LR) * max(0.0, 1 - x)


def _one_cycle(u: int) -> float:
    """OneCycleLR, cosine: lr / 25 -> lr at update 0.2 * 50 - 1 = 9 -> lr / 25 / 1e4 at 49."""
    def cos(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)

    peak = WARMUP / EPOCHS * EPOCHS * UPDATES - 1
    if u <= peak:
        return cos(LR / 25, LR, u / peak)
    return cos(LR, LR / 25 / 1e4, (u - peak) / (EPOCHS * UPDATES - 1 - peak))


SCHEDULE_CASES = {
    "cosine": (ScheduleSpec("cosine", warmup_epochs=WARMUP, min_lr=MIN_LR),
               _after_warmup(_cosine)),
    "linear": (ScheduleSpec("linear", warmup_epochs=WARMUP, min_lr=MIN_LR),
               _after_warmup(_linear)),
    "step": (ScheduleSpec("step", warmup_epochs=WARMUP, step_epochs=3, step_rate=0.5),
             _after_warmup(_step)),
    "constant": (ScheduleSpec("constant", warmup_epochs=WARMUP), _after_warmup(lambda t, s: LR)),
    "cyclic": (ScheduleSpec("cyclic", min_lr=MIN_LR, cycle_epochs=4), _triangle),
    "onecycle": (ScheduleSpec("onecycle", warmup_epochs=WARMUP), _one_cycle),
}


def _rates(spec: ScheduleSpec, epochs: int = EPOCHS) -> list[float]:
    """The rate after 0, 1, ..., ``epochs * UPDATES`` updates (index = updates made)."""
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=LR)
    schedule = make_schedule(optimizer, spec, LR, epochs, UPDATES)
    assert schedule is not None
    rates = [optimizer.param_groups[0]["lr"]]
    for update in range(1, epochs * UPDATES + 1):
        optimizer.step()  # as in training (no gradients: nothing moves)
        schedule.step(update)
        rates.append(optimizer.param_groups[0]["lr"])
    return rates


def test_every_schedule_is_covered():
    assert set(SCHEDULE_CASES) == set(SCHEDULES)


@pytest.mark.parametrize("name", list(SCHEDULE_CASES))
def test_schedule_rates_follow_the_formula(name):
    spec, formula = SCHEDULE_CASES[name]
    rates = _rates(spec)
    total = EPOCHS * UPDATES
    # The last update of the run uses rates[total - 1]; PyTorch schedules are not stepped
    # past the run (OneCycleLR raises there), timm's reach their end value.
    expected = [formula(u) for u in range(total)]
    np.testing.assert_allclose(rates[:total], expected, rtol=1e-9, atol=1e-12)
    if name in ("cyclic", "onecycle"):
        assert rates[total] == rates[total - 1]
    else:
        assert rates[total] == pytest.approx(formula(total), rel=1e-9)


@pytest.mark.parametrize(("name", "checks"), [
    # (update, rate) pairs read off the schedules, independent of the formulas above.
    ("cosine", [(0, LR / 100), (5, (LR / 100 + LR) / 2), (10, LR), (30, (LR + MIN_LR) / 2),
                (50, MIN_LR)]),
    ("linear", [(0, LR / 100), (10, LR), (30, (LR + MIN_LR) / 2), (40, MIN_LR + (LR - MIN_LR)
                                                                   / 4), (50, MIN_LR)]),
    ("step", [(9, _warmup(9)), (10, LR), (24, LR), (25, LR / 2), (39, LR / 2), (40, LR / 4),
              (50, LR / 4)]),
    ("constant", [(0, LR / 100), (10, LR), (49, LR), (50, LR)]),
    ("cyclic", [(0, MIN_LR), (5, (MIN_LR + LR) / 2), (10, LR), (20, MIN_LR), (30, LR),
                (40, MIN_LR), (45, (MIN_LR + LR) / 2)]),
    ("onecycle", [(0, LR / 25), (9, LR), (49, LR / 25 / 1e4)]),
])
def test_schedule_landmarks(name, checks):
    rates = _rates(SCHEDULE_CASES[name][0])
    for update, rate in checks:
        assert rates[update] == pytest.approx(rate, rel=1e-9), update
    assert max(rates) == pytest.approx(LR, rel=1e-9)  # the peak is the optimizer's lr


def test_schedules_without_warmup_start_at_the_peak():
    for name in ("cosine", "linear", "step", "constant"):
        rates = _rates(ScheduleSpec(name, min_lr=MIN_LR))
        assert rates[0] == pytest.approx(LR), name
        assert rates == sorted(rates, reverse=True), name  # never rises


def test_no_epochs_no_schedule():
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=LR)
    assert make_schedule(optimizer, ScheduleSpec("cosine"), LR, 0, UPDATES) is None
    assert optimizer.param_groups[0]["lr"] == LR


def test_unknown_schedule_names_the_key_and_the_choices():
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=LR)
    with pytest.raises(ValueError, match=r"training\.schedule\.name = 'poly'") as info:
        make_schedule(optimizer, ScheduleSpec("poly"), LR, EPOCHS, UPDATES)
    assert str(list(SCHEDULES)) in str(info.value)


# --- optimizers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    """timm's tiny ``test_resnet`` with 3 classes (BatchNorm layers, fc with a bias)."""
    torch.manual_seed(0)
    return make_classifier("test_resnet", 3)


def _decay_of(optimizer: torch.optim.Optimizer) -> dict[int, float]:
    """Weight decay of each parameter, by ``id``."""
    return {id(p): group["weight_decay"] for group in optimizer.param_groups
            for p in group["params"]}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_no_bias_decay_leaves_biases_and_norm_weights_undecayed(resnet, name):
    optimizer = make_optimizer(resnet, OptimizerSpec(name=name, weight_decay=0.01))
    decay = _decay_of(optimizer)
    named = dict(resnet.named_parameters())
    assert set(decay) == {id(p) for p in named.values()}  # every parameter, once
    flat = {n for n, p in named.items() if p.ndim <= 1}
    assert {"fc.bias", "bn1.weight", "bn1.bias", "layer1.0.bn2.weight"} <= flat
    for parameter_name, parameter in named.items():
        expected = 0.0 if parameter_name in flat else 0.01
        assert decay[id(parameter)] == expected, parameter_name
    assert "fc.weight" not in flat and "conv1.0.weight" not in flat


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_without_no_bias_decay_everything_decays(resnet, name):
    optimizer = make_optimizer(resnet, OptimizerSpec(name=name, weight_decay=0.01,
                                                     no_bias_decay=False))
    decay = _decay_of(optimizer)
    assert len(decay) == len(list(resnet.parameters()))
    assert set(decay.values()) == {0.01}


@pytest.mark.parametrize("no_bias_decay", [True, False])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_weight_decay_step_with_zero_gradients(name, no_bias_decay):
    """With zero gradients only weight decay moves a parameter: the weight always
    shrinks, the bias only when it is decayed."""
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.bias.fill_(1.0)
    optimizer = make_optimizer(layer, OptimizerSpec(name=name, lr=0.1, weight_decay=0.1,
                                                    no_bias_decay=no_bias_decay))
    for parameter in layer.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    assert (layer.weight < 1.0).all()
    if no_bias_decay:
        assert torch.equal(layer.bias, torch.ones(2))
    else:
        assert (layer.bias < 1.0).all()
    if name == "adamw":  # decoupled decay: w * (1 - lr * wd), whatever the gradient
        torch.testing.assert_close(layer.weight, torch.full((2, 3), 1 - 0.1 * 0.1))
    if name == "sgd":  # L2 with Nesterov: g = wd * w; buffer = g; step = g + m * buffer
        torch.testing.assert_close(layer.weight, torch.full((2, 3), 1 - 0.1 * 0.1 * 1.9))


@pytest.mark.parametrize("momentum", [0.5, 0.9])
def test_sgd_is_nesterov_with_the_given_momentum(momentum):
    optimizer = make_optimizer(nn.Linear(2, 2), OptimizerSpec("sgd", lr=0.3, momentum=momentum,
                                                              weight_decay=1e-4))
    assert type(optimizer) is torch.optim.SGD
    for group in optimizer.param_groups:
        assert group["nesterov"] is True
        assert group["momentum"] == momentum
        assert group["dampening"] == 0
        assert group["lr"] == 0.3


@pytest.mark.parametrize(("name", "kind", "decoupled"), [
    ("adamw", torch.optim.AdamW, True),
    ("adam", torch.optim.Adam, False),
])
@pytest.mark.parametrize("momentum", [0.8, 0.9])
def test_adam_beta1_is_the_momentum(name, kind, decoupled, momentum):
    optimizer = make_optimizer(nn.Linear(2, 2), OptimizerSpec(name, lr=1e-3, momentum=momentum,
                                                              weight_decay=0.05))
    assert type(optimizer) is kind
    for group in optimizer.param_groups:
        assert group["betas"] == (momentum, 0.999)
        assert group["lr"] == 1e-3
        assert group.get("decoupled_weight_decay", kind is torch.optim.AdamW) is decoupled


def test_unknown_optimizer_names_the_key_and_the_choices():
    with pytest.raises(ValueError, match=r"training\.optimizer = 'lion'") as info:
        make_optimizer(nn.Linear(2, 2), OptimizerSpec(name="lion"))
    assert "['sgd', 'adamw', 'adam']" in str(info.value)


def test_sgd_without_momentum_is_plain_sgd():
    # Nesterov needs momentum: with training.momentum 0, sgd is plain SGD, not an error.
    optimizer = make_optimizer(nn.Linear(2, 2), OptimizerSpec("sgd", lr=0.3, momentum=0.0))
    assert isinstance(optimizer, torch.optim.SGD)
    assert all(g["momentum"] == 0 and not g["nesterov"] for g in optimizer.param_groups)


def test_onecycle_keeps_the_configured_momentum():
    optimizer = make_optimizer(nn.Linear(2, 2), OptimizerSpec("sgd", lr=0.1, momentum=0.5))
    schedule = make_schedule(optimizer, ScheduleSpec(name="onecycle"), 0.1, 2, 5)
    for update in range(1, 10):
        schedule.step(update)
        assert all(g["momentum"] == 0.5 for g in optimizer.param_groups)
