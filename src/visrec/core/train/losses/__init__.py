"""Training criteria, chosen by name from :data:`LOSSES`, with class weights and logit
adjustment stacked on top.

A loss is one class in one file of this package and one name in :data:`LOSSES`. It is
built as ``LOSSES[name](weight=..., label_smoothing=..., **options)`` and called as
``loss(logits, targets)``, where the targets are class indices or soft targets (rows
summing to 1, as MixUp and CutMix make them). ``training.loss.name`` chooses it, and
``training.loss.options`` gives its keyword arguments; the balance plan may ask for
``focal``. :func:`make_criterion` stacks the parts a :class:`LossSpec` asks for.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from visrec.core.balance import BalancePlan
from visrec.core.train.losses.distillation import distillation_loss
from visrec.core.train.losses.focal import FocalLoss, soft_targets
from visrec.core.train.losses.jsd import JsdLoss
from visrec.core.train.losses.logit_adjusted import LogitAdjustedLoss

LossFactory = Callable[..., nn.Module]

LOSSES: dict[str, LossFactory] = {
    "cross_entropy": nn.CrossEntropyLoss,
    "focal": FocalLoss,
}
DEFAULT_LOSS = "cross_entropy"


def register_loss(name: str, factory: LossFactory) -> None:
    """Add a loss to :data:`LOSSES` under ``name`` (a plug-in's alternative to editing it).

    Raises:
        ValueError: If ``name`` is taken.
    """
    if name in LOSSES:
        raise ValueError(f"loss name {name!r} is taken by {LOSSES[name]!r}")
    LOSSES[name] = factory


def check_loss(name: str, options: dict[str, Any], key: str = "training.loss") -> None:
    """Build loss ``name`` once with ``options``, so that a bad name or option fails early.

    Raises:
        ValueError: Naming ``key``, the bad value and what is accepted.
    """
    if name not in LOSSES:
        raise ValueError(f"{key}.name = {name!r}: accepted {sorted(LOSSES)} (a new loss: a "
                         "class in visrec/core/train/losses/ and its name in LOSSES)")
    try:
        LOSSES[name](weight=None, label_smoothing=0.0, **options)
    except (TypeError, ValueError) as error:
        accepted = [p for p in inspect.signature(LOSSES[name]).parameters
                    if p not in ("weight", "label_smoothing", "self")]
        raise ValueError(f"{key}.options = {options!r}: {name} refused them "
                         f"({type(error).__name__}: {error}); it accepts {accepted}") from None


@dataclass(frozen=True)
class LossSpec:
    """The training criterion.

    Attributes:
        name: A name of :data:`LOSSES`.
        options: Its keyword arguments besides ``weight`` and ``label_smoothing``.
        label_smoothing: Share of the target spread evenly over the classes.
        logit_offsets: Added to the logits in training only (``tau * log prior``), or None.
        class_weights: Loss weight per class, or None.
        weights_from_epoch: 0-based epoch from which ``class_weights`` apply (deferred
            re-weighting); before it the loss is unweighted.
    """

    name: str = DEFAULT_LOSS
    options: dict[str, Any] = field(default_factory=dict)
    label_smoothing: float = 0.0
    logit_offsets: tuple[float, ...] | None = None
    class_weights: tuple[float, ...] | None = None
    weights_from_epoch: int = 0


def make_criterion(spec: LossSpec, epoch: int) -> nn.Module:
    """The criterion of ``epoch`` (0-based): class weights start at ``weights_from_epoch``.

    Args:
        spec: What the criterion is made of.
        epoch: The epoch it is for.
    """
    weight = None
    if spec.class_weights is not None and epoch >= spec.weights_from_epoch:
        weight = torch.tensor(spec.class_weights, dtype=torch.float32)
    criterion = LOSSES[spec.name](weight=weight, label_smoothing=spec.label_smoothing,
                                  **spec.options)
    if spec.logit_offsets is not None:
        criterion = LogitAdjustedLoss(criterion,
                                      torch.tensor(spec.logit_offsets, dtype=torch.float32))
    return criterion


def loss_spec(plan: BalancePlan, name: str, options: dict[str, Any], label_smoothing: float,
              epochs: int) -> LossSpec:
    """The :class:`LossSpec` of the training loss and a balance plan's loss and weights.

    Args:
        plan: The balance plan: a loss it asks for (focal), logit adjustment, class
            weights.
        name: ``training.loss.name``.
        options: ``training.loss.options``.
        label_smoothing: From the training recipe.
        epochs: Epochs of training, to place deferred weights.

    Raises:
        ValueError: If the plan asks for one loss and ``training.loss`` names another.
    """
    if plan.loss.name is not None:
        if name != DEFAULT_LOSS:
            raise ValueError(f"class_balance.strategy ({plan.strategy}) sets the loss to "
                             f"{plan.loss.name!r}, and training.loss.name = {name!r}; keep "
                             f"one: training.loss.name: {DEFAULT_LOSS}, or a strategy "
                             "without focal")
        name, options = plan.loss.name, dict(plan.loss.options)
    tau = plan.loss.logit_adjustment_tau
    offsets = None if tau is None else tuple(tau * v for v in plan.loss.log_prior)
    weights, start = None, 0
    if plan.class_weights is not None:
        weights = plan.class_weights.values
        start = min(epochs - 1, round(epochs * plan.class_weights.start_fraction))
    return LossSpec(name=name, options=options, label_smoothing=label_smoothing,
                    logit_offsets=offsets, class_weights=weights, weights_from_epoch=start)


__all__ = ["DEFAULT_LOSS", "LOSSES", "FocalLoss", "JsdLoss", "LogitAdjustedLoss", "LossFactory",
           "LossSpec", "check_loss", "distillation_loss", "loss_spec", "make_criterion",
           "register_loss", "soft_targets"]
