"""The recipe of one run of the training loop, as :func:`visrec.core.train.fit` takes it.

Learning rates are absolute here (already scaled to the global batch); what the loss is
and what validation measures belong to the task, not to this recipe.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from visrec.core.train.recipe import OptimizerSpec, ScheduleSpec

logger = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class SwaSpec:
    """Stochastic Weight Averaging (Izmailov et al. 2018); rates absolute.

    Attributes:
        start: 0-based first SWA epoch.
        lr: Constant SWA rate, or the top of each cycle.
        schedule: ``constant`` (SWALR, averaging every epoch) or ``cyclic`` (from ``lr`` down
            to ``min_lr`` within each cycle, averaging at its end).
        anneal_epochs: ``constant``: epochs to anneal from the current rate to ``lr``.
        cycle_epochs: ``cyclic``: epochs per cycle.
        min_lr: ``cyclic``: the rate at the end of each cycle.
    """

    start: int
    lr: float
    schedule: str = "constant"
    anneal_epochs: int = 1
    cycle_epochs: int = 1
    min_lr: float = 0.0


@dataclass(frozen=True)
class EmaSpec:
    """Exponential moving average of the weights (timm ``ModelEmaV3``)."""

    decay: float = 0.9998
    warmup: bool = True


@dataclass(frozen=True)
class FitConfig:
    """Recipe of one training run; learning rates are absolute (already batch-scaled).

    Attributes:
        epochs: Total epochs, SWA epochs included.
        optimizer: Optimizer, peak rate and weight decay.
        schedule: Warmup and decay over the epochs before SWA.
        swa: SWA, or None.
        ema: EMA of the weights, or None.
        precision: ``fp32``, ``bf16`` or ``fp16`` autocast (fp16 with a gradient scaler).
        channels_last: NHWC memory layout for the model and batches.
        compile: ``torch.compile`` the training forward pass.
        grad_clip: Maximum gradient norm, or None.
        freeze_epochs: First epochs that train only the head.
        seed: With the epoch, seeds every epoch's shuffling, sampling and augmentation.
    """

    epochs: int
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    swa: SwaSpec | None = None
    ema: EmaSpec | None = None
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    grad_clip: float | None = None
    freeze_epochs: int = 0
    seed: int = 0

    @property
    def decay_epochs(self) -> int:
        """Epochs of the warmup-and-decay schedule: those before SWA."""
        return self.epochs if self.swa is None else self.swa.start


def swa_start_epoch(epochs: int, start_fraction: float) -> int:
    """First SWA epoch (0-based): ``start_fraction`` of the run, leaving at least one SWA epoch."""
    return min(epochs - 1, max(0, round(epochs * start_fraction)))


def resolve_precision(requested: str, device: torch.device, key: str = "training.precision"
                      ) -> str:
    """``auto``: bf16 on GPUs that have it, else fp16, on CUDA; fp32 on the CPU."""
    if device.type == "cuda":
        if requested == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return requested
    if requested == "fp16":
        logger.warning("%s = 'fp16' needs CUDA (its gradient scaler); training on the CPU in "
                       "fp32 (bf16 is the CPU's mixed precision)", key)
    return "fp32" if requested in ("auto", "fp16") else requested


def resolve_channels_last(requested: str | bool) -> bool:
    """``auto``: NHWC on every device: cuDNN's and oneDNN's convolutions are faster with it
    (timm resnet10t on a 2-core CPU: 865 -> 1,021 training images/s)."""
    return True if requested == "auto" else bool(requested)
