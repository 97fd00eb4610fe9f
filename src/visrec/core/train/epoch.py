"""One pass over the training data for any :class:`Task`: :func:`train_one_epoch`.

Each batch goes to the device (the per-batch half of the transform, channels_last), the
task gives its loss under autocast, and the update runs with the gradient scaler, clipping,
the schedule and EMA of :class:`StepOptions`. A loss that is not finite stops the run with
advice. bf16 on the CPU checks the loss and the gradients before each update and redoes a
failed step in fp32, then trains on in fp32 (:mod:`visrec.core.train.cpu_bf16`).
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from visrec.core.progress import progress
from visrec.core.train.cpu_bf16 import (
    StepSnapshot,
    any_rank,
    grad_norm,
    lower_isas,
    onednn_cpu_isa,
)
from visrec.core.train.recipe import LrSchedule
from visrec.core.train.tasks.base import Task, TaskStep, unwrap

logger = logging.getLogger(__name__)


@dataclass
class StepOptions:
    """What happens around each forward/backward pass of :func:`train_one_epoch`.

    Attributes:
        schedule: Stepped after every update, or None.
        scaler: Gradient scaler (fp16), or None.
        autocast_dtype: Mixed-precision dtype, or None for float32. bf16 on the CPU is set
            to None by :func:`train_one_epoch` when it falls back to fp32.
        grad_clip: Maximum gradient norm, or None.
        ema: A timm ``ModelEmaV3`` updated after every step, or None.
        channels_last: Convert batches to NHWC.
        batch_transform: The per-batch half of the training transform (crop, flip,
            normalise), applied on the device, or None when the loader's images are ready.
    """

    schedule: LrSchedule | None = None
    scaler: torch.amp.GradScaler | None = None
    autocast_dtype: torch.dtype | None = None
    grad_clip: float | None = None
    ema: Any = None
    channels_last: bool = False
    batch_transform: nn.Module | None = None


def _autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def _backward_step(loss: torch.Tensor, model: nn.Module, optimizer: torch.optim.Optimizer,
                   options: StepOptions) -> None:
    optimizer.zero_grad(set_to_none=True)
    scaler = options.scaler
    if scaler is not None:
        scaler.scale(loss).backward()
        if options.grad_clip is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        return
    loss.backward()
    if options.grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
    optimizer.step()


def _diverged(found: str, where: str) -> FloatingPointError:
    return FloatingPointError(
        f"{found} at {where}; lower training.lr (or raise training.schedule.warmup_epochs, "
        "or set training.grad_clip); the checkpoint of the last finished epoch is kept")


def _not_finite(loss: torch.Tensor, model: nn.Module, optimizer: torch.optim.Optimizer,
                options: StepOptions) -> str | None:
    """Back-propagate ``loss`` (and clip) as :func:`_backward_step` does before its update;
    what is not finite, on this process or another one, or None."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if options.grad_clip is not None:
        norm = nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
    else:
        norm = grad_norm(model)
    found = (f"loss is {loss.item()}" if not torch.isfinite(loss)
             else f"gradient norm is {norm.item()}" if not torch.isfinite(norm) else None)
    # Under DDP every process must take the same path (or the next all-reduce hangs): the
    # gradients are averaged already, but each process has its own loss.
    if any_rank(found is not None) and found is None:
        found = "another process's loss or gradients are not finite"
    return found


def _warn_bf16_failed(where: str, found: str) -> None:
    isa = onednn_cpu_isa()
    lower = lower_isas(isa)
    hint = (f" To keep bf16, set ONEDNN_MAX_CPU_ISA to a lower level ({', '.join(lower)}) "
            "before starting Python." if lower else "")
    logger.warning("bf16 autocast failed at %s (%s) and fp32 did not: this CPU's bf16 kernels "
                   "(oneDNN with %s) failed, not the learning rate; training goes on in fp32."
                   "%s", where, found, isa, hint)


def _bf16_cpu_step(model: nn.Module, task: Task, images: torch.Tensor, targets: torch.Tensor,
                   optimizer: torch.optim.Optimizer, options: StepOptions,
                   where: str) -> TaskStep:
    """One update under bf16 autocast on the CPU, redone in fp32 when bf16's loss or
    gradients are not finite (on any process); ``options`` then trains on in fp32.

    The gradients are checked before the update: the CPU's failing bf16 kernels give
    non-finite gradients with a finite loss, and the loss turns non-finite only after the
    update has put them into the weights, when redoing the step no longer helps.

    Raises:
        FloatingPointError: If the step is not finite in fp32 either.
    """
    snapshot = StepSnapshot.take(model, images, targets)
    with torch.autocast("cpu", dtype=options.autocast_dtype):
        step = task.step(model, images, targets)
    bf16_found = _not_finite(step.loss, model, optimizer, options)
    if bf16_found is not None:
        # The same batch and MixUp draw; BatchNorm's statistics take the batch once.
        step = task.step(model, *snapshot.restore(model))
        fp32_found = _not_finite(step.loss, model, optimizer, options)
        if fp32_found is not None:
            raise _diverged(f"{fp32_found} in fp32 as well as under bf16 autocast "
                            f"({bf16_found})", where)
        _warn_bf16_failed(where, bf16_found)
        options.autocast_dtype = None
    optimizer.step()
    return step


def train_one_epoch(model: nn.Module, loader: DataLoader, task: Task,
                    optimizer: torch.optim.Optimizer, device: torch.device, epoch: int,
                    global_step: int = 0, options: StepOptions | None = None,
                    frozen_norm: bool = False) -> dict[str, float]:
    """One pass over ``loader``.

    Args:
        model: The model, already on ``device`` (possibly wrapped by DDP or compiled).
        loader: Training batches of (images, targets).
        task: Gives each batch's loss (its epoch already started).
        optimizer: Steps once per batch.
        device: Where batches go.
        epoch: 0-based epoch index, for the progress bar and errors.
        global_step: Updates made before this epoch.
        options: Schedule, mixed precision, clipping, EMA, batch transform.
        frozen_norm: Keep the model in eval mode (BatchNorm statistics and dropout fixed),
            as when only the head is trained.

    Raises:
        FloatingPointError: If the loss stops being finite (under bf16 autocast on the CPU:
            if the loss or the gradients are not finite in fp32 either; when only bf16's
            are, the step is redone in fp32 and ``options.autocast_dtype`` set to None).

    Returns:
        Mean loss, the task's training metrics (``train_<name>``), images per second,
        seconds, the share of the time spent waiting for data, and the last learning rate.
    """
    options = options or StepOptions()
    model.train(not frozen_norm)
    total_loss, seen, waited = 0.0, 0, 0.0
    sums: dict[str, float] = {}
    start = ready = time.perf_counter()
    bar = progress(loader, f"epoch {epoch + 1}", unit="batch")
    for step_index, (batch_images, batch_targets) in enumerate(bar):
        waited += time.perf_counter() - ready
        images = batch_images.to(device, non_blocking=True)
        if options.batch_transform is not None:
            images = options.batch_transform(images)
        if options.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = batch_targets.to(device, non_blocking=True)
        where = f"epoch {epoch + 1}, step {step_index + 1}"
        if device.type == "cpu" and options.autocast_dtype == torch.bfloat16:
            step = _bf16_cpu_step(model, task, images, targets, optimizer, options, where)
        else:
            with _autocast(device, options.autocast_dtype):
                step = task.step(model, images, targets)
            if not torch.isfinite(step.loss):
                raise _diverged(f"loss is {step.loss.item()}", where)
            _backward_step(step.loss, model, optimizer, options)
        global_step += 1
        if options.schedule is not None:
            options.schedule.step(global_step)
        if options.ema is not None:
            options.ema.update(unwrap(model), step=global_step)
        total_loss += step.loss.item() * step.count
        for name, value in step.sums.items():
            sums[name] = sums.get(name, 0.0) + float(value)
        seen += step.count
        ready = time.perf_counter()
        bar.set_postfix(loss=f"{total_loss / seen:.3f}",
                        **{name: f"{value / seen:.3f}" for name, value in sums.items()},
                        lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                        img_s=f"{seen / max(ready - start, 1e-9):.0f}",
                        data=f"{waited / max(ready - start, 1e-9):.0%}")
    seconds = time.perf_counter() - start
    return {"train_loss": total_loss / max(seen, 1),
            **{f"train_{name}": value / max(seen, 1) for name, value in sums.items()},
            "images_per_s": seen / max(seconds, 1e-9), "seconds": seconds,
            "data_wait": waited / max(seconds, 1e-9), "lr": optimizer.param_groups[0]["lr"]}
