"""The training recipe's parts: optimizer, learning-rate schedule, the linear scaling rule.

Each part is chosen by name and built from timm's or PyTorch's own factories
(``create_optimizer_v2``, ``create_scheduler_v2``, ``CyclicLR``, ``OneCycleLR``);
this module only converts the recipe into their arguments once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adamw", "adam")
SCHEDULES = ("cosine", "linear", "step", "cyclic", "onecycle", "constant")


@dataclass(frozen=True)
class OptimizerSpec:
    """Optimizer of a run; the learning rate is absolute (already batch-scaled).

    Attributes:
        name: ``sgd`` (Nesterov momentum), ``adamw`` or ``adam``.
        lr: Peak learning rate.
        momentum: SGD momentum, or Adam's beta1.
        weight_decay: Decay coefficient (L2 for SGD and Adam, decoupled for AdamW).
        no_bias_decay: Leave biases and norm-layer weights undecayed (He et al. 2019).
        lr_scales: ``(prefix, factor)``: parameters whose names start with ``prefix`` (a
            proxy loss's ``criterion.``) form their own group, undecayed, at ``factor``
            times every rate of the schedule (timm's ``lr_scale``).
    """

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    no_bias_decay: bool = True
    lr_scales: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class ScheduleSpec:
    """Learning-rate schedule over the epochs before SWA; rates absolute.

    Attributes:
        name: One of :data:`SCHEDULES`.
        warmup_epochs: Linear warmup from ``lr / 100`` before the decay.
        min_lr: Last rate of cosine and linear; low point of cyclic.
        step_epochs: ``step``: epochs between decays.
        step_rate: ``step``: factor applied at each decay.
        cycle_epochs: ``cyclic``: epochs of one up-and-down cycle.
    """

    name: str = "cosine"
    warmup_epochs: int = 0
    min_lr: float = 0.0
    step_epochs: int = 10
    step_rate: float = 0.1
    cycle_epochs: float = 4.0


def make_optimizer(model: nn.Module, spec: OptimizerSpec) -> torch.optim.Optimizer:
    """The optimizer of ``spec`` over ``model``'s trainable parameters (timm factory).

    Raises:
        ValueError: If ``spec.name`` is not one of :data:`OPTIMIZERS`.
    """
    from timm.optim import create_optimizer_v2  # noqa: PLC0415

    if spec.name not in OPTIMIZERS:
        raise ValueError(f"training.optimizer = {spec.name!r}: accepted {list(OPTIMIZERS)}")
    extra: dict[str, Any] = ({"momentum": spec.momentum} if spec.name == "sgd"
                             else {"betas": (spec.momentum, 0.999)})
    # timm's "sgd" is SGD with Nesterov momentum (plain SGD without momentum: Nesterov needs
    # some); filter_bias_and_bn puts 1-D tensors (biases, norm weights) in a group without
    # decay.
    name = "momentum" if spec.name == "sgd" and spec.momentum == 0 else spec.name
    if not spec.lr_scales:
        return create_optimizer_v2(model, opt=name, lr=spec.lr,
                                   weight_decay=spec.weight_decay,
                                   filter_bias_and_bn=spec.no_bias_decay, **extra)
    return create_optimizer_v2(_scaled_groups(model, spec), opt=name, lr=spec.lr,
                               weight_decay=spec.weight_decay, **extra)


def _scaled_groups(model: nn.Module, spec: OptimizerSpec) -> list[dict[str, Any]]:
    """timm's weight-decay groups, less the parameters of ``spec.lr_scales``' prefixes,
    which get a group each with its ``lr_scale``."""
    from timm.optim import param_groups_weight_decay  # noqa: PLC0415

    named = dict(model.named_parameters())
    scaled: list[dict[str, Any]] = []
    taken: set[int] = set()
    for prefix, factor in spec.lr_scales:
        params = [p for n, p in named.items() if n.startswith(prefix) and p.requires_grad]
        taken |= {id(p) for p in params}
        if params:
            # timm's schedules scale their rate for the group by lr_scale, from initial_lr.
            scaled.append({"params": params, "weight_decay": 0.0, "lr_scale": factor,
                           "lr": spec.lr * factor, "initial_lr": spec.lr})
    if spec.no_bias_decay:
        groups = param_groups_weight_decay(model, spec.weight_decay)
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    for group in groups:
        group["params"] = [p for p in group["params"] if id(p) not in taken]
    return [group for group in groups if group["params"]] + scaled


class LrSchedule:
    """One interface over timm's and PyTorch's schedulers: :meth:`step` after every update.

    Args:
        scheduler: A timm ``Scheduler`` (driven by the update count) or a PyTorch
            ``LRScheduler`` (driven by its own counter).
        total_updates: Updates the schedule covers; a PyTorch scheduler is not stepped past
            them (OneCycleLR raises there).
    """

    def __init__(self, scheduler: Any, total_updates: int) -> None:
        self.scheduler = scheduler
        self.total_updates = total_updates
        self.timm = hasattr(scheduler, "step_update")

    def step(self, update: int) -> None:
        """Set the rate for after ``update`` updates (1-based count)."""
        if self.timm:
            self.scheduler.step_update(num_updates=update)
        elif update < self.total_updates:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state, for checkpoints."""
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.scheduler.load_state_dict(state)


def _warmup(spec: ScheduleSpec, epochs: int) -> int:
    warmup = min(spec.warmup_epochs, max(epochs - 1, 0))
    if warmup < spec.warmup_epochs:
        logger.warning("training.schedule.warmup_epochs = %d shortened to %d: the schedule "
                       "before SWA has %d epochs", spec.warmup_epochs, warmup, epochs)
    return warmup


def _torch_schedule(optimizer: torch.optim.Optimizer, spec: ScheduleSpec, lr: float,
                    epochs: int, updates_per_epoch: int) -> Any:
    total = epochs * updates_per_epoch
    scales = [group.get("lr_scale", 1.0) for group in optimizer.param_groups]
    if spec.name == "onecycle":
        # Warm up for the share given by warmup_epochs (0.3 of the run when 0), then anneal.
        share = spec.warmup_epochs / epochs if spec.warmup_epochs else 0.3
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[lr * scale for scale in scales], total_steps=max(total, 2),
            pct_start=min(max(share, 1 / max(total, 2)), 0.99), anneal_strategy="cos",
            cycle_momentum=False)  # keep training.momentum as configured
    half_cycle = max(1, round(spec.cycle_epochs * updates_per_epoch / 2))
    return torch.optim.lr_scheduler.CyclicLR(
        optimizer, base_lr=[spec.min_lr * scale for scale in scales],
        max_lr=[lr * scale for scale in scales], step_size_up=half_cycle,
        mode="triangular", cycle_momentum=False)


def make_schedule(optimizer: torch.optim.Optimizer, spec: ScheduleSpec, lr: float,
                  epochs: int, updates_per_epoch: int) -> LrSchedule | None:
    """The schedule of ``spec`` over ``epochs`` epochs, stepped per update.

    Args:
        optimizer: Its rates are set (``lr`` is the peak).
        spec: Which schedule and its settings.
        lr: Peak learning rate.
        epochs: Epochs the schedule covers (those before SWA); 0 gives None.
        updates_per_epoch: Optimizer steps per epoch.

    Raises:
        ValueError: If ``spec.name`` is not one of :data:`SCHEDULES`.
    """
    from timm.scheduler import create_scheduler_v2  # noqa: PLC0415

    if spec.name not in SCHEDULES:
        raise ValueError(f"training.schedule.name = {spec.name!r}: accepted {list(SCHEDULES)}")
    if epochs == 0:
        return None
    if spec.name in ("cyclic", "onecycle"):
        return LrSchedule(_torch_schedule(optimizer, spec, lr, epochs, updates_per_epoch),
                          epochs * updates_per_epoch)
    warmup = _warmup(spec, epochs)
    # timm names: linear is a polynomial of power 1; constant is a step that never decays.
    timm_name = {"linear": "poly", "constant": "step"}.get(spec.name, spec.name)
    extra: dict[str, Any] = {"linear": {"decay_rate": 1.0},
                             "step": {"decay_epochs": spec.step_epochs,
                                      "decay_rate": spec.step_rate},
                             "constant": {"decay_epochs": epochs + 1,
                                          "decay_rate": 1.0}}.get(spec.name, {})
    # warmup_prefix: the warmup reaches `lr`, then the decay spans the remaining epochs.
    scheduler, _ = create_scheduler_v2(
        optimizer, sched=timm_name, num_epochs=epochs - warmup, warmup_epochs=warmup,
        warmup_prefix=True, warmup_lr=lr / 100, min_lr=spec.min_lr, step_on_epochs=False,
        updates_per_epoch=updates_per_epoch, **extra)
    return LrSchedule(scheduler, epochs * updates_per_epoch)


LR_REFERENCE_BATCH = 256  # learning rates are given per 256 images (Goyal et al. 2017)


def scaled_lr(lr_per_256: float, batch_size: int) -> float:
    """The linear scaling rule (Goyal et al. 2017): a rate per 256 images for ``batch_size``."""
    return lr_per_256 * (batch_size / LR_REFERENCE_BATCH)
