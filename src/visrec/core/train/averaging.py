"""Weight averaging: SWA's learning-rate schedules and the EMA of the weights."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import SWALR

from visrec.core.train.config import EmaSpec, SwaSpec
from visrec.core.train.recipe import LrSchedule


def make_swa_schedule(optimizer: torch.optim.Optimizer, swa: SwaSpec,
                      updates_per_epoch: int) -> Any:
    """SWALR for a constant rate; for cyclic, a saw-tooth from ``lr`` down to ``min_lr``.

    Made when SWA starts: SWALR sets the optimizer's rate when it is made. A parameter
    group with an ``lr_scale`` (a proxy loss's proxies) runs at that multiple of the rates.
    """
    scales = [group.get("lr_scale", 1.0) for group in optimizer.param_groups]
    if swa.schedule == "constant":
        return SWALR(optimizer,  # a rate per parameter group: torch accepts a list
                     swa_lr=[swa.lr * scale for scale in scales],  # type: ignore[arg-type]
                     anneal_epochs=swa.anneal_epochs, anneal_strategy="cos")
    updates = max(2, swa.cycle_epochs * updates_per_epoch)
    cyclic = torch.optim.lr_scheduler.CyclicLR(
        optimizer, base_lr=[swa.min_lr * scale for scale in scales],
        max_lr=[swa.lr * scale for scale in scales], step_size_up=1,
        step_size_down=updates - 1, cycle_momentum=False)
    cyclic.step()  # the first update of each cycle runs at the top rate (Izmailov et al.)
    return LrSchedule(cyclic, total_updates=2**62)


def make_ema(model: nn.Module, ema: EmaSpec) -> Any:
    """A timm ``ModelEmaV3`` of ``model``, updated after every optimizer step."""
    from timm.utils import ModelEmaV3  # noqa: PLC0415 - timm imports in seconds

    return ModelEmaV3(model, decay=ema.decay, use_warmup=ema.warmup)


def swa_epoch_ends_cycle(swa: SwaSpec, epoch: int) -> bool:
    """Whether SWA averages after ``epoch`` (0-based): every epoch for a constant rate,
    at the end of each cycle for a cyclic one."""
    cycle = swa.cycle_epochs if swa.schedule == "cyclic" else 1
    return (epoch - swa.start + 1) % cycle == 0
