"""The training loop: :func:`fit`, for any :class:`Task` (one epoch is
:func:`~visrec.core.train.epoch.train_one_epoch`).

``fit`` runs the recipe of a :class:`FitConfig`: optimizer and schedule from
:mod:`visrec.core.train.recipe`, mixed precision, channels_last, gradient clipping,
EMA (timm ``ModelEmaV3``) and SWA (``torch.optim.swa_utils``), a checkpoint after every
epoch, one or several processes. What a batch's loss is and what validation measures
come from the task. A run continues exactly from a checkpoint: every epoch reseeds the
generators from ``(seed, epoch)``, so an epoch does not depend on how the run got there.
bf16 on the CPU falls back to fp32 for the rest of the run when the CPU's bf16 kernels give
a non-finite loss or gradient (:mod:`visrec.core.train.cpu_bf16`); a resumed run stays in
fp32.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.optim.swa_utils import update_bn
from torch.utils.data import DataLoader

from visrec.core.models import set_backbone_frozen
from visrec.core.progress import progress
from visrec.core.seeding import epoch_seed, seed_everything
from visrec.core.train.averaging import make_swa_schedule, swa_epoch_ends_cycle
from visrec.core.train.checkpoint import CheckpointStore, rng_state
from visrec.core.train.config import PRECISIONS, FitConfig
from visrec.core.train.cpu_bf16 import any_rank
from visrec.core.train.epoch import StepOptions, train_one_epoch
from visrec.core.train.state import (
    RunState,
    checkpoint_state,
    load_run_state,
    make_trained,
    prepare_run,
    restore_run,
)
from visrec.core.train.tasks.base import Task

logger = logging.getLogger(__name__)


@dataclass
class FitResult:
    """Weight sets of a run (``final``, and ``swa`` / ``ema`` when on), its history, and the
    generators' state where it ended (for a step that continues the run)."""

    weights: dict[str, nn.Module]
    history: pd.DataFrame
    random_state: dict[str, Any] = field(default_factory=dict)


def reseed_for_epoch(seed: int, epoch: int, loader: DataLoader) -> None:
    """Reseed the global generators, the loader and its sampler for ``epoch``.

    Each epoch then draws the same batches and augmentations whether the run got there
    without a break or resumed from a checkpoint.
    """
    value = epoch_seed(seed, epoch)
    seed_everything(value)
    if isinstance(loader.generator, torch.Generator):
        loader.generator.manual_seed(value)
    sampler = loader.sampler
    set_epoch = getattr(sampler, "set_epoch", None)
    if callable(set_epoch):
        set_epoch(epoch)
    generator = getattr(sampler, "generator", None)
    if isinstance(generator, torch.Generator):
        generator.manual_seed(value)


def _train_epoch(run: RunState, config: FitConfig, task: Task, loader: DataLoader,
                 device: torch.device, epoch: int, options: StepOptions) -> dict[str, Any]:
    """Train one epoch in its phase (frozen backbone, decay, SWA); average SWA weights."""
    swa = config.swa
    in_swa = swa is not None and epoch >= swa.start
    frozen = epoch < config.freeze_epochs
    if config.freeze_epochs:
        set_backbone_frozen(run.model, frozen)
    if swa is not None and in_swa and run.swa_schedule is None:
        run.swa_schedule = make_swa_schedule(run.optimizer, swa, len(loader))
    cyclic = swa is not None and in_swa and swa.schedule == "cyclic"
    options.schedule = run.swa_schedule if cyclic else None if in_swa else run.schedule
    row: dict[str, Any] = {"epoch": epoch + 1,
                           "phase": "swa" if in_swa else "frozen" if frozen else "train"}
    task.start_epoch(epoch, device)
    row |= train_one_epoch(run.trained, loader, task, run.optimizer, device, epoch,
                           global_step=run.global_step, options=options, frozen_norm=frozen)
    if options.autocast_dtype != PRECISIONS[config.precision]:
        row["precision"] = "fp32"  # bf16 on the CPU fell back, in this epoch or before
    run.global_step += len(loader)
    if swa is not None and in_swa:
        averaged = run.swa_model
        if averaged is not None:  # every process: the same weights under DDP
            never_averaged = int(averaged.n_averaged) == 0
            last = epoch == config.epochs - 1
            if swa_epoch_ends_cycle(swa, epoch) or (last and never_averaged):
                averaged.update_parameters(run.model)
        if not cyclic:
            run.swa_schedule.step()
    return row


def _validate(run: RunState, task: Task, val_loader: DataLoader | None,
              device: torch.device) -> dict[str, float]:
    if val_loader is None:
        return {}
    row = {f"val_{k}": v for k, v in task.validate(run.model, val_loader, device).items()}
    if run.ema is not None:
        row |= {f"val_ema_{k}": v
                for k, v in task.validate(run.ema.module, val_loader, device).items()}
    return row


def _resumed_precision(run: RunState, config: FitConfig,
                       device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``config``, or None when bf16 on the CPU fell back to fp32 in the
    epochs a checkpoint restored (agreed by all processes: a process without the checkpoint
    follows the one that has it)."""
    dtype = PRECISIONS[config.precision]
    if device.type == "cpu" and dtype == torch.bfloat16 and any_rank(
            any(row.get("precision") == "fp32" for row in run.history)):
        return None
    return dtype


def _inputs(loader: DataLoader, transform: nn.Module | None,
            device: torch.device) -> Iterator[torch.Tensor]:
    """The training images of ``loader`` as the model sees them (for ``update_bn``)."""
    for batch, _ in loader:
        images = batch.to(device, non_blocking=True)
        yield images if transform is None else transform(images)


def fit(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader | None,
        config: FitConfig, task: Task, device: torch.device, *,
        checkpoints: CheckpointStore | None = None, fingerprint: str = "",
        on_epoch: Callable[[list[dict[str, Any]]], None] | None = None,
        distributed: bool = False, main: bool = True,
        batch_transform: nn.Module | None = None) -> FitResult:
    """Train ``model`` on ``task`` with the recipe of ``config``; continue from a
    checkpoint when one fits.

    Args:
        model: The model to train (moved to ``device``).
        train_loader: Training batches (sharded across processes when distributed).
        val_loader: Validation batches, evaluated after each epoch by the main process.
        config: The recipe.
        task: The loss of a batch and the validation figures.
        device: Where to train.
        checkpoints: Where the checkpoint of every epoch goes, or None; the main process
            reads and writes it and sends what it read to the others.
        fingerprint: Identifies the settings; a checkpoint with another one is ignored.
        on_epoch: Called by the main process with the history after every epoch (logging).
        distributed: Wrap the model in DDP (a process group is initialised).
        main: This process evaluates, keeps the EMA, logs and writes checkpoints.
        batch_transform: The per-batch half of the training transform, on the device.

    Returns:
        The final weights and, when on, the SWA weights (BatchNorm statistics recomputed on
        the training data) and the EMA weights; one history row per epoch (with
        ``precision: fp32`` from the epoch on in which bf16 on the CPU fell back to fp32).
    """
    updates = len(train_loader)
    run = prepare_run(model, config, device, updates, main)
    # Every process restores rank 0's checkpoint before DDP wraps the model: all continue
    # from the same epoch and state, and a finished run trains nowhere.
    state = load_run_state(checkpoints, fingerprint, main, distributed)
    if state is not None:
        restore_run(run, state, config, updates)
        if main and checkpoints is not None:
            logger.info("resuming after epoch %d of %d from %s%s", run.epoch, config.epochs,
                        checkpoints.path,
                        ": every epoch is done" if run.epoch >= config.epochs else "")
    run.trained = make_trained(run.model, config, device, distributed)
    task.setup(run.model, device, config.channels_last)
    options = StepOptions(scaler=run.scaler,
                          autocast_dtype=_resumed_precision(run, config, device),
                          grad_clip=config.grad_clip, ema=run.ema,
                          channels_last=config.channels_last,
                          batch_transform=None if batch_transform is None
                          else batch_transform.to(device))
    # The run's bar: epochs done, and the time left for the whole run (main process only).
    bar = progress(total=config.epochs, initial=run.epoch, desc="training", unit="epoch",
                   leave=True, disable=None if main else True)
    started, first = time.perf_counter(), run.epoch
    for epoch in range(run.epoch, config.epochs):
        reseed_for_epoch(config.seed, epoch, train_loader)
        row = _train_epoch(run, config, task, train_loader, device, epoch, options)
        run.epoch = epoch + 1
        if not main:
            continue
        run.history.append(row | _validate(run, task, val_loader, device))
        left = time_left(time.perf_counter() - started, epoch + 1 - first,
                         config.epochs - epoch - 1)
        logger.info("epoch %d/%d %s (%s left)", epoch + 1, config.epochs,
                    format_row(run.history[-1]), left)
        bar.update()
        bar.set_postfix(img_s=f"{row['images_per_s']:.0f}",
                        **{name: f"{value:.3f}" for name, value in run.history[-1].items()
                           if name in ("train_loss", "val_balanced_accuracy",
                                       "val_mean_average_precision_at_r")})
        if checkpoints is not None:
            checkpoints.save(checkpoint_state(run, fingerprint))
        if on_epoch is not None:
            on_epoch(run.history)
    bar.close()
    weights = {"final": run.model}
    if run.swa_model is not None:
        # Every process re-estimates the statistics on its share of the data, so that
        # SyncBatchNorm's collectives (CUDA) meet; plain BatchNorm keeps each process's
        # own, and rank 0's are returned, as DDP's buffers are.
        reseed_for_epoch(config.seed, config.epochs, train_loader)
        update_bn(_inputs(train_loader, options.batch_transform, device), run.swa_model,
                  device=device)
        weights["swa"] = run.swa_model.module
    if run.ema is not None:
        weights["ema"] = run.ema.module
    return FitResult(weights, pd.DataFrame(run.history), rng_state())


def time_left(seconds: float, done: int, remaining: int) -> str:
    """The run's time left, from the mean of the ``done`` epochs' ``seconds``: ``1 h 02
    min``, ``3 min 05 s`` or ``42 s``."""
    left = round(seconds / max(done, 1) * remaining)
    hours, rest = divmod(left, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def format_row(row: dict[str, Any]) -> str:
    """A history row's finite figures, ``name=value`` for the log."""
    return " ".join(f"{k}={v:.4g}" for k, v in row.items()
                    if isinstance(v, float) and math.isfinite(v))
