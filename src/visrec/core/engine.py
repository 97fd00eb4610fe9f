"""The training loop: ``train_one_epoch``, ``evaluate`` and ``fit`` with SWA, EMA and checkpoints.

``fit`` runs the whole recipe of a :class:`FitConfig`: optimizer and schedule from
:mod:`visrec.core.recipe`, mixed precision, MixUp/CutMix, distillation, gradient
clipping, EMA (timm ``ModelEmaV3``) and SWA (``torch.optim.swa_utils``). After every
epoch it writes a checkpoint that a later call continues from, exactly: every epoch
reseeds the generators from ``(seed, epoch)``, so an epoch does not depend on how
the run got there.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from visrec.core.checkpoint import CheckpointStore, rng_state, set_rng_state
from visrec.core.losses import JsdLoss, LossSpec, distillation_loss, make_criterion
from visrec.core.metrics import balanced_accuracy
from visrec.core.recipe import (
    LrSchedule,
    OptimizerSpec,
    ScheduleSpec,
    make_optimizer,
    make_schedule,
    set_backbone_frozen,
)

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
class MixSpec:
    """Batch MixUp / CutMix (timm ``Mixup``); label smoothing comes from the loss."""

    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    prob: float = 1.0
    switch_prob: float = 0.5


@dataclass(frozen=True)
class DistillSpec:
    """Knowledge distillation (Hinton et al. 2015): ``(1 - weight) * loss + weight * KD``."""

    temperature: float = 4.0
    weight: float = 0.5


@dataclass(frozen=True)
class FitConfig:
    """Recipe of one training run; learning rates are absolute (already batch-scaled).

    Attributes:
        epochs: Total epochs, SWA epochs included.
        optimizer: Optimizer, peak rate and weight decay.
        schedule: Warmup and decay over the epochs before SWA.
        loss: The criterion (label smoothing, focal, class weights, logit adjustment).
        swa: SWA, or None.
        ema: EMA of the weights, or None.
        mix: MixUp/CutMix, or None.
        jsd_weight: AugMix's consistency loss weight when batches hold its three views
            (clean, augmented, augmented), or None.
        distill: Distillation settings, used when ``fit`` gets a teacher.
        precision: ``fp32``, ``bf16`` or ``fp16`` autocast (fp16 with a gradient scaler).
        channels_last: NHWC memory layout for the model and batches.
        compile: ``torch.compile`` the training forward pass.
        grad_clip: Maximum gradient norm, or None.
        freeze_epochs: First epochs that train only the classifier.
        seed: With the epoch, seeds every epoch's shuffling, sampling and augmentation.
    """

    epochs: int
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    loss: LossSpec = field(default_factory=LossSpec)
    swa: SwaSpec | None = None
    ema: EmaSpec | None = None
    mix: MixSpec | None = None
    jsd_weight: float | None = None
    distill: DistillSpec = field(default_factory=DistillSpec)
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    grad_clip: float | None = None
    freeze_epochs: int = 0
    seed: int = 0


@dataclass
class StepOptions:
    """What happens around each forward/backward pass of :func:`train_one_epoch`.

    Attributes:
        schedule: Stepped after every update, or None.
        scaler: Gradient scaler (fp16), or None.
        autocast_dtype: Mixed-precision dtype, or None for float32.
        mixup: A timm ``Mixup`` applied to each batch, or None.
        teacher: Distillation teacher in eval mode, or None.
        distill: Temperature and weight of the distillation term.
        grad_clip: Maximum gradient norm, or None.
        ema: A timm ``ModelEmaV3`` updated after every step, or None.
        channels_last: Convert batches to NHWC.
        num_classes: Classes, for soft targets.
        batch_transform: The per-batch half of the training transform (crop, flip,
            normalise), applied on the device, or None when the loader's images are ready.
    """

    schedule: LrSchedule | None = None
    scaler: torch.amp.GradScaler | None = None
    autocast_dtype: torch.dtype | None = None
    mixup: Any = None
    teacher: nn.Module | None = None
    distill: DistillSpec = field(default_factory=DistillSpec)
    grad_clip: float | None = None
    ema: Any = None
    channels_last: bool = False
    num_classes: int = 0
    batch_transform: nn.Module | None = None


@dataclass
class FitResult:
    """Weight sets of a run (``final``, and ``swa`` / ``ema`` when on) and its history."""

    weights: dict[str, nn.Module]
    history: pd.DataFrame


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that CPU runs repeat exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch: a separate stream per ``(seed, epoch)``."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def seed_epoch(seed: int, epoch: int, loader: DataLoader) -> None:
    """Reseed the global generators, the loader and its sampler for ``epoch``.

    Each epoch then draws the same batches and augmentations whether the run got there
    without a break or resumed from a checkpoint.
    """
    value = epoch_seed(seed, epoch)
    seed_everything(value)
    if isinstance(loader.generator, torch.Generator):
        loader.generator.manual_seed(value)
    sampler = loader.sampler
    if callable(getattr(sampler, "set_epoch", None)):
        sampler.set_epoch(epoch)
    if isinstance(getattr(sampler, "generator", None), torch.Generator):
        sampler.generator.manual_seed(value)


def swa_start_epoch(epochs: int, start_fraction: float) -> int:
    """First SWA epoch (0-based): ``start_fraction`` of the run, leaving at least one SWA epoch."""
    return min(epochs - 1, max(0, round(epochs * start_fraction)))


def _autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def _forward_loss(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
                  criterion: nn.Module, device: torch.device,
                  options: StepOptions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mix the batch, run the model (and teacher) under autocast; return the loss, the
    logits and the class each row counts as for accuracy."""
    if options.mixup is not None:
        from timm.data.mixup import mixup_target  # noqa: PLC0415

        if images.shape[0] % 2 == 0:
            images, targets = options.mixup(images, targets)
        else:  # timm pairs images: an odd batch only gets the smoothed one-hot targets
            targets = mixup_target(targets, options.num_classes, 1.0,
                                   options.mixup.label_smoothing)
    with _autocast(device, options.autocast_dtype):
        logits = model(images)
        loss = criterion(logits.float(), targets)
        if options.teacher is not None:
            with torch.no_grad():
                teacher_logits = options.teacher(images)
            weight = options.distill.weight
            loss = (1 - weight) * loss + weight * distillation_loss(
                logits.float(), teacher_logits.float(), options.distill.temperature)
    labels = targets.argmax(dim=1) if targets.ndim == 2 else targets
    return loss, logits[:labels.shape[0]], labels  # AugMix views: the clean images count


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


def train_one_epoch(model: nn.Module, loader: DataLoader, criterion: nn.Module,
                    optimizer: torch.optim.Optimizer, device: torch.device, epoch: int,
                    global_step: int = 0, options: StepOptions | None = None,
                    frozen_norm: bool = False) -> dict[str, float]:
    """One pass over ``loader``.

    Args:
        model: The model, already on ``device`` (possibly wrapped by DDP or compiled).
        loader: Training batches of (images, class indices).
        criterion: The loss; takes class indices or soft targets.
        optimizer: Steps once per batch.
        device: Where batches go.
        epoch: 0-based epoch index, for the progress bar and errors.
        global_step: Updates made before this epoch.
        options: Schedule, mixed precision, mixing, distillation, clipping, EMA.
        frozen_norm: Keep the model in eval mode (BatchNorm statistics and dropout fixed),
            as when only the classifier is trained.

    Raises:
        FloatingPointError: If the loss stops being finite.

    Returns:
        Mean loss, top-1 accuracy, images per second, seconds, the share of the time spent
        waiting for data, and the last learning rate.
    """
    options = options or StepOptions()
    model.train(not frozen_norm)
    total_loss, correct, seen, waited = 0.0, 0, 0, 0.0
    start = ready = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}", leave=False, disable=None)
    for step, (batch_images, batch_targets) in enumerate(bar):
        waited += time.perf_counter() - ready
        images = batch_images.to(device, non_blocking=True)
        if options.batch_transform is not None:
            images = options.batch_transform(images)
        if options.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        loss, logits, labels = _forward_loss(model, images,
                                             batch_targets.to(device, non_blocking=True),
                                             criterion, device, options)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}; lower "
                "training.lr (or raise training.schedule.warmup_epochs, or set "
                "training.grad_clip); the checkpoint of the last finished epoch is kept")
        _backward_step(loss, model, optimizer, options)
        global_step += 1
        if options.schedule is not None:
            options.schedule.step(global_step)
        if options.ema is not None:
            options.ema.update(_unwrap(model), step=global_step)
        total_loss += loss.item() * labels.shape[0]
        correct += (logits.argmax(dim=1) == labels).sum().item()
        seen += labels.shape[0]
        ready = time.perf_counter()
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}",
                        lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                        img_s=f"{seen / max(ready - start, 1e-9):.0f}",
                        data=f"{waited / max(ready - start, 1e-9):.0%}")
    seconds = time.perf_counter() - start
    return {"train_loss": total_loss / max(seen, 1), "train_top1": correct / max(seen, 1),
            "images_per_s": seen / max(seconds, 1e-9), "seconds": seconds,
            "data_wait": waited / max(seconds, 1e-9), "lr": optimizer.param_groups[0]["lr"]}


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a compiled and/or DDP wrapper."""
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[np.ndarray,
                                                                                 np.ndarray]:
    """Logits (float32, N x K) and labels of every image in ``loader``, in order.

    Args:
        model: The model, already on ``device``; put in eval mode.
        loader: Batches of (images, class indices), not shuffled.
        device: Where batches go.
    """
    model.eval()
    logits, labels = [], []
    for images, targets in loader:
        logits.append(model(images.to(device, non_blocking=True)).float().cpu())
        labels.append(targets)
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, float]:
    """Cross-entropy, top-1 and balanced accuracy of ``model`` on ``loader``.

    Args:
        model: The model, already on ``device``.
        loader: Batches of (images, class indices).
        device: Where batches go.
    """
    logits, labels = predict(model, loader, device)
    loss = nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels))
    predicted = logits.argmax(axis=1)
    return {"loss": float(loss), "top1": float((predicted == labels).mean()),
            "balanced_accuracy": balanced_accuracy(labels, predicted)}


@dataclass
class _Run:
    """The mutable state of a run: what a checkpoint saves."""

    model: nn.Module
    trainer: nn.Module  # what the loop calls: the model, wrapped by DDP and/or compiled
    optimizer: torch.optim.Optimizer
    schedule: LrSchedule | None
    scaler: torch.amp.GradScaler | None
    swa_model: AveragedModel | None
    ema: Any
    swa_schedule: Any = None
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch: int = 0
    global_step: int = 0


def _decay_epochs(config: FitConfig) -> int:
    return config.epochs if config.swa is None else config.swa.start


def _prepare(model: nn.Module, config: FitConfig, device: torch.device, updates_per_epoch: int,
             distributed: bool, main: bool) -> _Run:
    """Model on the device, optimizer, schedule, scaler, SWA and EMA holders."""
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    trainer = model
    if distributed:
        trainer = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=config.freeze_epochs > 0)
    if config.compile:
        trainer = torch.compile(trainer)
    optimizer = make_optimizer(model, config.optimizer)
    schedule_spec = config.schedule
    if config.swa is not None and config.swa.schedule == "constant":
        schedule_spec = replace(schedule_spec, min_lr=config.swa.lr)  # decay into the SWA rate
    schedule = make_schedule(optimizer, schedule_spec, config.optimizer.lr,
                             _decay_epochs(config), updates_per_epoch)
    scaler = (torch.amp.GradScaler(device.type) if config.precision == "fp16" else None)
    swa_model = AveragedModel(model) if config.swa is not None and main else None
    ema = None
    if config.ema is not None and main:
        from timm.utils import ModelEmaV3  # noqa: PLC0415

        ema = ModelEmaV3(model, decay=config.ema.decay, use_warmup=config.ema.warmup)
    return _Run(model, trainer, optimizer, schedule, scaler, swa_model, ema)


def _swa_schedule(run: _Run, swa: SwaSpec, updates_per_epoch: int) -> Any:
    """SWALR for a constant rate; for cyclic, a saw-tooth from ``lr`` down to ``min_lr``."""
    if swa.schedule == "constant":
        return SWALR(run.optimizer, swa_lr=swa.lr, anneal_epochs=swa.anneal_epochs,
                     anneal_strategy="cos")
    updates = max(2, swa.cycle_epochs * updates_per_epoch)
    cyclic = torch.optim.lr_scheduler.CyclicLR(
        run.optimizer, base_lr=swa.min_lr, max_lr=swa.lr, step_size_up=1,
        step_size_down=updates - 1, cycle_momentum=False)
    cyclic.step()  # the first update of each cycle runs at the top rate (Izmailov et al.)
    return LrSchedule(cyclic, total_updates=2**62)


def _checkpoint_state(run: _Run, fingerprint: str) -> dict[str, Any]:
    def plain(state: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in state.items() if not callable(value)}

    return {
        "fingerprint": fingerprint, "epoch": run.epoch, "global_step": run.global_step,
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "schedule": None if run.schedule is None else plain(run.schedule.state_dict()),
        "swa_schedule": None if run.swa_schedule is None
        else plain(run.swa_schedule.state_dict()),
        "scaler": None if run.scaler is None else run.scaler.state_dict(),
        "swa_model": None if run.swa_model is None else run.swa_model.state_dict(),
        "ema": None if run.ema is None else run.ema.module.state_dict(),
        "rng": rng_state(), "history": json.dumps(run.history),
    }


def _restore(run: _Run, state: dict[str, Any], config: FitConfig,
             updates_per_epoch: int) -> None:
    """Continue ``run`` from a checkpoint made by :func:`_checkpoint_state`."""
    run.model.load_state_dict(state["model"])
    if state["swa_schedule"] is not None:  # made before the optimizer's rates are restored
        run.swa_schedule = _swa_schedule(run, config.swa, updates_per_epoch)
        run.swa_schedule.load_state_dict(state["swa_schedule"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.schedule is not None and state["schedule"] is not None:
        run.schedule.load_state_dict(state["schedule"])
    if run.scaler is not None and state["scaler"] is not None:
        run.scaler.load_state_dict(state["scaler"])
    if run.swa_model is not None and state["swa_model"] is not None:
        run.swa_model.load_state_dict(state["swa_model"])
    if run.ema is not None and state["ema"] is not None:
        run.ema.module.load_state_dict(state["ema"])
    set_rng_state(state["rng"])
    run.history = json.loads(state["history"])
    run.epoch, run.global_step = int(state["epoch"]), int(state["global_step"])


def _step_options(run: _Run, config: FitConfig, device: torch.device,
                  teacher: nn.Module | None) -> StepOptions:
    num_classes = int(run.model.num_classes)
    mixup = None
    if config.mix is not None:
        from timm.data import Mixup  # noqa: PLC0415

        mixup = Mixup(mixup_alpha=config.mix.mixup_alpha, cutmix_alpha=config.mix.cutmix_alpha,
                      prob=config.mix.prob, switch_prob=config.mix.switch_prob,
                      label_smoothing=config.loss.label_smoothing, num_classes=num_classes)
    if teacher is not None:
        teacher.to(device).eval()
        if config.channels_last:
            teacher.to(memory_format=torch.channels_last)
    return StepOptions(scaler=run.scaler, autocast_dtype=PRECISIONS[config.precision],
                       mixup=mixup, teacher=teacher, distill=config.distill,
                       grad_clip=config.grad_clip, ema=run.ema,
                       channels_last=config.channels_last, num_classes=num_classes)


def _criterion(config: FitConfig, epoch: int, device: torch.device) -> nn.Module:
    """The loss of ``epoch``; with MixUp the targets already carry the label smoothing."""
    spec = config.loss if config.mix is None else replace(config.loss, label_smoothing=0.0)
    criterion = make_criterion(spec, epoch)
    if config.jsd_weight is not None:
        criterion = JsdLoss(criterion, config.jsd_weight)
    return criterion.to(device)


def _train_epoch(run: _Run, config: FitConfig, loader: DataLoader, device: torch.device,
                 epoch: int, options: StepOptions) -> dict[str, Any]:
    """Train one epoch in its phase (frozen backbone, decay, SWA); average SWA weights."""
    swa = config.swa
    in_swa = swa is not None and epoch >= swa.start
    frozen = epoch < config.freeze_epochs
    if config.freeze_epochs:
        set_backbone_frozen(run.model, frozen)
    if in_swa and run.swa_schedule is None:  # SWALR sets the rate when made
        run.swa_schedule = _swa_schedule(run, swa, len(loader))
    cyclic = in_swa and swa.schedule == "cyclic"
    options.schedule = run.swa_schedule if cyclic else None if in_swa else run.schedule
    row = {"epoch": epoch + 1, "phase": "swa" if in_swa else "frozen" if frozen else "train"}
    row |= train_one_epoch(run.trainer, loader, _criterion(config, epoch, device),
                           run.optimizer, device, epoch, global_step=run.global_step,
                           options=options, frozen_norm=frozen)
    run.global_step += len(loader)
    if in_swa:
        cycle_end = (epoch - swa.start + 1) % (swa.cycle_epochs if cyclic else 1) == 0
        averaging = run.swa_model is not None
        never_averaged = averaging and int(run.swa_model.n_averaged) == 0
        if averaging and (cycle_end or (epoch == config.epochs - 1 and never_averaged)):
            run.swa_model.update_parameters(run.model)
        if not cyclic:
            run.swa_schedule.step()
    return row


def _validate(run: _Run, val_loader: DataLoader | None, device: torch.device) -> dict[str, float]:
    if val_loader is None:
        return {}
    row = {f"val_{k}": v for k, v in evaluate(run.model, val_loader, device).items()}
    if run.ema is not None:
        row |= {f"val_ema_{k}": v for k, v in evaluate(run.ema.module, val_loader,
                                                        device).items()}
    return row


def _inputs(loader: DataLoader, transform: nn.Module | None,
            device: torch.device) -> Iterator[torch.Tensor]:
    """The training images of ``loader`` as the model sees them (for ``update_bn``)."""
    for batch, _ in loader:
        images = batch.to(device, non_blocking=True)
        yield images if transform is None else transform(images)


def fit(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader | None,
        config: FitConfig, device: torch.device, *, teacher: nn.Module | None = None,
        checkpoints: CheckpointStore | None = None, fingerprint: str = "",
        on_epoch: Callable[[list[dict[str, Any]]], None] | None = None,
        distributed: bool = False, main: bool = True,
        batch_transform: nn.Module | None = None) -> FitResult:
    """Train ``model`` with the recipe of ``config``; continue from a checkpoint when one fits.

    Args:
        model: The model to train (moved to ``device``).
        train_loader: Training batches (sharded across processes when distributed).
        val_loader: Validation batches, evaluated after each epoch by the main process.
        config: The recipe.
        device: Where to train.
        teacher: Distillation teacher, or None.
        checkpoints: Where the checkpoint of every epoch goes (main process), or None.
        fingerprint: Identifies the settings; a checkpoint with another one is ignored.
        on_epoch: Called by the main process with the history after every epoch (logging).
        distributed: Wrap the model in DDP (a process group is initialised).
        main: This process evaluates, averages, logs and writes checkpoints.
        batch_transform: The per-batch half of the training transform, on the device.

    Returns:
        The final weights and, when on, the SWA weights (BatchNorm statistics recomputed on
        the training data) and the EMA weights; one history row per epoch.
    """
    updates = len(train_loader)
    run = _prepare(model, config, device, updates, distributed, main)
    state = None if checkpoints is None else checkpoints.load(fingerprint)
    if state is not None:
        _restore(run, state, config, updates)
        logger.info("resuming after epoch %d of %d from %s", run.epoch, config.epochs,
                    checkpoints.path)
    options = _step_options(run, config, device, teacher)
    if batch_transform is not None:
        options.batch_transform = batch_transform.to(device)
    for epoch in range(run.epoch, config.epochs):
        seed_epoch(config.seed, epoch, train_loader)
        row = _train_epoch(run, config, train_loader, device, epoch, options)
        run.epoch = epoch + 1
        if not main:
            continue
        run.history.append(row | _validate(run, val_loader, device))
        logger.info("epoch %d/%d %s", epoch + 1, config.epochs,
                    " ".join(f"{k}={v:.4g}" for k, v in run.history[-1].items()
                             if isinstance(v, float) and math.isfinite(v)))
        if checkpoints is not None:
            checkpoints.save(_checkpoint_state(run, fingerprint))
        if on_epoch is not None:
            on_epoch(run.history)
    weights = {"final": run.model}
    if run.swa_model is not None:
        seed_epoch(config.seed, config.epochs, train_loader)
        update_bn(_inputs(train_loader, options.batch_transform, device), run.swa_model,
                  device=device)
        weights["swa"] = run.swa_model.module
    if run.ema is not None:
        weights["ema"] = run.ema.module
    return FitResult(weights, pd.DataFrame(run.history))


def retrain_classifier(model: nn.Module, loader: DataLoader, val_loader: DataLoader | None,
                       config: FitConfig, device: torch.device, phase: str = "crt",
                       batch_transform: nn.Module | None = None) -> pd.DataFrame:
    """Classifier re-training (Kang et al. 2020): a new last layer on a frozen backbone.

    The backbone keeps its weights and BatchNorm statistics; the classifier is
    re-initialised and trained with ``config``'s optimizer and schedule (no warmup, SWA,
    EMA or mixing) on the batches of ``loader``, which should sample classes evenly.

    Args:
        model: A trained timm model (has ``reset_classifier`` and ``get_classifier``).
        loader: Class-balanced training batches.
        val_loader: Validation batches, evaluated after each epoch, or None.
        config: The recipe of the re-training.
        device: Where to train.
        phase: Name of the phase in the history.
        batch_transform: The per-batch half of the training transform, on the device.

    Returns:
        One history row per epoch; ``model`` is changed in place.
    """
    model.reset_classifier(model.num_classes)  # a new head, made on the CPU
    model.to(device)
    set_backbone_frozen(model, True)
    schedule_spec = replace(config.schedule, warmup_epochs=0)
    optimizer = make_optimizer(model.get_classifier(), config.optimizer)
    options = StepOptions(schedule=make_schedule(optimizer, schedule_spec, config.optimizer.lr,
                                                 config.epochs, len(loader)),
                          batch_transform=None if batch_transform is None
                          else batch_transform.to(device))
    history = []
    try:
        for epoch in range(config.epochs):
            seed_epoch(config.seed, epoch, loader)
            criterion = make_criterion(config.loss, epoch).to(device)
            row = {"epoch": epoch + 1, "phase": phase}
            row |= train_one_epoch(model, loader, criterion, optimizer, device, epoch,
                                   global_step=epoch * len(loader), options=options,
                                   frozen_norm=True)
            if val_loader is not None:
                row |= {f"val_{k}": v for k, v in evaluate(model, val_loader, device).items()}
            history.append(row)
            logger.info("%s epoch %d/%d %s", phase, epoch + 1, config.epochs,
                        " ".join(f"{k}={v:.4g}" for k, v in row.items()
                                 if isinstance(v, float) and math.isfinite(v)))
    finally:
        set_backbone_frozen(model, False)
    return pd.DataFrame(history)
