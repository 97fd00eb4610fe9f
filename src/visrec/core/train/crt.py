"""Classifier re-training (Kang et al. 2020): a new last layer on a frozen backbone."""

from __future__ import annotations

import logging
from dataclasses import replace

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from visrec.core.models import set_backbone_frozen, timm_api
from visrec.core.train.config import FitConfig
from visrec.core.train.epoch import StepOptions, train_one_epoch
from visrec.core.train.loop import format_row, reseed_for_epoch
from visrec.core.train.recipe import make_optimizer, make_schedule
from visrec.core.train.tasks.classification import ClassificationTask

logger = logging.getLogger(__name__)


def retrain_classifier(model: nn.Module, loader: DataLoader, val_loader: DataLoader | None,
                       config: FitConfig, task: ClassificationTask, device: torch.device,
                       phase: str = "crt",
                       batch_transform: nn.Module | None = None) -> pd.DataFrame:
    """Re-initialise the classifier of a trained model and train it alone.

    The backbone keeps its weights and BatchNorm statistics; the classifier is
    re-initialised and trained with ``config``'s optimizer and schedule (no warmup, SWA,
    EMA or mixing) on the batches of ``loader``, which should sample classes evenly.

    Args:
        model: A trained timm model (has ``reset_classifier`` and ``get_classifier``).
        loader: Class-balanced training batches.
        val_loader: Validation batches, evaluated after each epoch, or None.
        config: The recipe of the re-training.
        task: The classification loss (plain, as the batches balance the classes).
        device: Where to train.
        phase: Name of the phase in the history.
        batch_transform: The per-batch half of the training transform, on the device.

    Returns:
        One history row per epoch; ``model`` is changed in place.
    """
    timm_model = timm_api(model)
    timm_model.reset_classifier(timm_model.num_classes)  # a new head, made on the CPU
    model.to(device)
    set_backbone_frozen(model, True)
    schedule_spec = replace(config.schedule, warmup_epochs=0)
    optimizer = make_optimizer(timm_model.get_classifier(), config.optimizer)
    options = StepOptions(schedule=make_schedule(optimizer, schedule_spec, config.optimizer.lr,
                                                 config.epochs, len(loader)),
                          batch_transform=None if batch_transform is None
                          else batch_transform.to(device))
    history = []
    task.setup(model, device, channels_last=False)
    try:
        for epoch in range(config.epochs):
            reseed_for_epoch(config.seed, epoch, loader)
            task.start_epoch(epoch, device)
            row = {"epoch": epoch + 1, "phase": phase}
            row |= train_one_epoch(model, loader, task, optimizer, device, epoch,
                                   global_step=epoch * len(loader), options=options,
                                   frozen_norm=True)
            if val_loader is not None:
                row |= {f"val_{k}": v for k, v in task.validate(model, val_loader,
                                                                device).items()}
            history.append(row)
            logger.info("%s epoch %d/%d %s", phase, epoch + 1, config.epochs, format_row(row))
    finally:
        set_backbone_frozen(model, False)
    return pd.DataFrame(history)
