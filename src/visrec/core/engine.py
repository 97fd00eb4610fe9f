"""The training loop: ``train_one_epoch``, ``evaluate`` and ``fit`` with SWA."""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from visrec.core.losses import LossSpec, make_criterion
from visrec.core.metrics import balanced_accuracy

if TYPE_CHECKING:
    from timm.scheduler.scheduler import Scheduler

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitConfig:
    """Recipe of one training run; learning rates are absolute (already batch-scaled).

    Attributes:
        epochs: Total epochs, SWA epochs included.
        lr: Peak learning rate after warmup.
        momentum: SGD momentum (Nesterov).
        weight_decay: L2 decay, not applied to biases and norm layers.
        warmup_epochs: Epochs of linear warmup from ``lr / 100``.
        loss: The criterion (label smoothing, focal, class weights, logit adjustment).
        swa_start: Epoch index (0-based) at which SWA begins, or None without SWA.
        swa_lr: Constant SWA learning rate.
        swa_anneal_epochs: Epochs to anneal from the current rate to ``swa_lr``.
    """

    epochs: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 0
    loss: LossSpec = field(default_factory=LossSpec)
    swa_start: int | None = None
    swa_lr: float = 0.0
    swa_anneal_epochs: int = 1


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that CPU runs repeat exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def swa_start_epoch(epochs: int, start_fraction: float) -> int:
    """First SWA epoch (0-based): ``start_fraction`` of the run, leaving at least one SWA epoch."""
    return min(epochs - 1, max(0, round(epochs * start_fraction)))


def train_one_epoch(model: nn.Module, loader: DataLoader, criterion: nn.Module,
                    optimizer: torch.optim.Optimizer, device: torch.device, epoch: int,
                    scheduler: Scheduler | None = None, global_step: int = 0,
                    frozen_norm: bool = False) -> dict[str, float]:
    """One pass over ``loader``; steps ``scheduler`` per update when given (timm scheduler).

    Args:
        model: The model, already on ``device``.
        loader: Training batches of (images, class indices).
        criterion: The loss.
        optimizer: Steps once per batch.
        device: Where batches go.
        epoch: 0-based epoch index, for the progress bar and errors.
        scheduler: timm scheduler stepped per update, or None (SWA epochs).
        global_step: Updates made before this epoch.
        frozen_norm: Keep the model in eval mode (BatchNorm statistics and dropout fixed),
            as when only the classifier is re-trained.

    Raises:
        FloatingPointError: If the loss stops being finite.

    Returns:
        Mean loss, top-1 accuracy, images per second, seconds and the last learning rate.
    """
    model.train(not frozen_norm)
    total_loss, correct, seen = 0.0, 0, 0
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}", leave=False, disable=None)
    for step, (batch_images, batch_targets) in enumerate(bar):
        images = batch_images.to(device, non_blocking=True)
        targets = batch_targets.to(device, non_blocking=True)
        logits = model(images)
        loss = criterion(logits, targets)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}; "
                "lower training.lr (or raise training.warmup_epochs)"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        global_step += 1
        if scheduler is not None:
            scheduler.step_update(num_updates=global_step)
        batch = targets.shape[0]
        total_loss += loss.item() * batch
        correct += (logits.argmax(dim=1) == targets).sum().item()
        seen += batch
        elapsed = time.perf_counter() - start
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}",
                        lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                        img_s=f"{seen / max(elapsed, 1e-9):.0f}")
    seconds = time.perf_counter() - start
    return {"train_loss": total_loss / max(seen, 1), "train_top1": correct / max(seen, 1),
            "images_per_s": seen / max(seconds, 1e-9), "seconds": seconds,
            "lr": optimizer.param_groups[0]["lr"]}


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


def _make_optimizer(model: nn.Module, config: FitConfig) -> torch.optim.Optimizer:
    from timm.optim import create_optimizer_v2  # noqa: PLC0415

    # timm's "sgd" is SGD with Nesterov momentum; biases and norm weights get no decay.
    return create_optimizer_v2(model, opt="sgd", lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay, filter_bias_and_bn=True)


def _make_scheduler(optimizer: torch.optim.Optimizer, config: FitConfig,
                    updates_per_epoch: int) -> Scheduler | None:
    """Warmup then cosine decay over the epochs before SWA, ending at the SWA rate."""
    from timm.scheduler import create_scheduler_v2  # noqa: PLC0415

    decay_epochs = config.epochs if config.swa_start is None else config.swa_start
    if decay_epochs == 0:
        return None
    warmup_epochs = min(config.warmup_epochs, decay_epochs - 1)
    if warmup_epochs < config.warmup_epochs:
        logger.warning("training.warmup_epochs = %d shortened to %d: the schedule before SWA "
                       "has %d epochs", config.warmup_epochs, warmup_epochs, decay_epochs)
    # warmup_prefix: the warmup reaches `lr`, then the cosine decays over the remaining epochs.
    scheduler, _ = create_scheduler_v2(
        optimizer, sched="cosine", num_epochs=decay_epochs - warmup_epochs,
        warmup_epochs=warmup_epochs, warmup_prefix=True, warmup_lr=config.lr / 100,
        min_lr=config.swa_lr if config.swa_start is not None else config.lr / 1000,
        step_on_epochs=False, updates_per_epoch=updates_per_epoch)
    return scheduler


def fit(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader | None,
        config: FitConfig, device: torch.device) -> tuple[nn.Module, nn.Module | None,
                                                           pd.DataFrame]:
    """Train ``model``; average weights from ``config.swa_start`` on (SWA).

    Args:
        model: The model to train (moved to ``device``).
        train_loader: Training batches.
        val_loader: Validation batches, evaluated after each epoch, or None.
        config: The recipe.
        device: Where to train.

    Returns:
        ``(model, swa_model, history)``: the final model, the SWA average with BatchNorm
        statistics recomputed on the training data (None without SWA), one history row
        per epoch.
    """
    model.to(device)
    optimizer = _make_optimizer(model, config)
    scheduler = _make_scheduler(optimizer, config, len(train_loader))
    swa_model = None if config.swa_start is None else AveragedModel(model)
    swa_scheduler = None  # made at the first SWA epoch: SWALR sets the rate when constructed
    history = []
    for epoch in range(config.epochs):
        in_swa = config.swa_start is not None and epoch >= config.swa_start
        row = {"epoch": epoch + 1, "phase": "swa" if in_swa else "train"}
        if in_swa and swa_scheduler is None:
            swa_scheduler = SWALR(optimizer, swa_lr=config.swa_lr,
                                  anneal_epochs=config.swa_anneal_epochs, anneal_strategy="cos")
        criterion = make_criterion(config.loss, epoch).to(device)  # deferred weights start late
        row |= train_one_epoch(model, train_loader, criterion, optimizer, device, epoch,
                               scheduler=None if in_swa else scheduler,
                               global_step=epoch * len(train_loader))
        if in_swa:
            swa_model.update_parameters(model)
            swa_scheduler.step()
        if val_loader is not None:
            row |= {f"val_{k}": v for k, v in evaluate(model, val_loader, device).items()}
        history.append(row)
        logger.info("epoch %d/%d %s", epoch + 1, config.epochs,
                    " ".join(f"{k}={v:.4g}" for k, v in row.items()
                             if isinstance(v, float) and math.isfinite(v)))
    if swa_model is not None:
        update_bn(train_loader, swa_model, device=device)
        swa_model = swa_model.module
    return model, swa_model, pd.DataFrame(history)


def retrain_classifier(model: nn.Module, loader: DataLoader, val_loader: DataLoader | None,
                       config: FitConfig, device: torch.device,
                       phase: str = "crt") -> pd.DataFrame:
    """Classifier re-training (Kang et al. 2020): a new last layer on a frozen backbone.

    The backbone keeps its weights and BatchNorm statistics; the classifier is
    re-initialised and trained with ``config``'s recipe (cosine decay, no SWA) on the
    batches of ``loader``, which should sample classes evenly.

    Args:
        model: A trained timm model (has ``reset_classifier`` and ``get_classifier``).
        loader: Class-balanced training batches.
        val_loader: Validation batches, evaluated after each epoch, or None.
        config: The recipe of the re-training (``swa_start`` is ignored).
        device: Where to train.
        phase: Name of the phase in the history.

    Returns:
        One history row per epoch; ``model`` is changed in place.
    """
    model.reset_classifier(model.num_classes)  # a new head, made on the CPU
    model.to(device)
    trainable = {id(p) for p in model.get_classifier().parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in trainable)
    config = replace(config, swa_start=None, warmup_epochs=0)
    head = model.get_classifier()
    optimizer = _make_optimizer(head, config)
    scheduler = _make_scheduler(optimizer, config, len(loader))
    history = []
    try:
        for epoch in range(config.epochs):
            criterion = make_criterion(config.loss, epoch).to(device)
            row = {"epoch": epoch + 1, "phase": phase}
            row |= train_one_epoch(model, loader, criterion, optimizer, device, epoch,
                                   scheduler=scheduler, global_step=epoch * len(loader),
                                   frozen_norm=True)
            if val_loader is not None:
                row |= {f"val_{k}": v for k, v in evaluate(model, val_loader, device).items()}
            history.append(row)
            logger.info("%s epoch %d/%d %s", phase, epoch + 1, config.epochs,
                        " ".join(f"{k}={v:.4g}" for k, v in row.items()
                                 if isinstance(v, float) and math.isfinite(v)))
    finally:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
    return pd.DataFrame(history)
