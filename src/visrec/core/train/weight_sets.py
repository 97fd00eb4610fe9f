"""The weight sets of a run after training: classifier re-training of each, and their
validation figures and joined history."""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from visrec.core.data import SamplerPlan
from visrec.core.evaluate import predict_logits, validation_metrics
from visrec.core.models import make_classifier
from visrec.core.train.checkpoint import set_rng_state
from visrec.core.train.config import FitConfig
from visrec.core.train.crt import retrain_classifier
from visrec.core.train.launcher import (
    DataSpec,
    ModelSpec,
    TrainedWeights,
    make_job_transform,
    make_train_loader,
    make_val_loader,
    state_on_cpu,
)
from visrec.core.train.tasks import ClassificationTask

VAL_FIGURES = ("loss", "top1", "balanced_accuracy")


def _filled_model(spec: ModelSpec, state: dict[str, torch.Tensor]) -> nn.Module:
    """A model made anew as ``spec`` says, then given the weights ``state``."""
    model = make_classifier(spec.architecture, spec.num_outputs, None, spec.channels)
    model.load_state_dict(state)
    return model


def weight_set_models(trained: TrainedWeights, spec: ModelSpec) -> dict[str, nn.Module]:
    """The weight sets as models: each made anew (as ``spec`` says), then filled."""
    return {name: _filled_model(spec, state) for name, state in trained.weights.items()}


def retrain_classifiers(trained: TrainedWeights, spec: ModelSpec, data: DataSpec,
                        sampler: SamplerPlan, config: FitConfig, task: ClassificationTask,
                        device: torch.device) -> TrainedWeights:
    """Classifier re-training (Kang et al. 2020) of every weight set of a run.

    The generators start from the state the run ended with, so the new heads are drawn
    alike whether this follows training in one process or runs on its own.

    Args:
        trained: The run's weight sets and history.
        spec: How the models are made.
        data: The training images (one view per image) and validation images.
        sampler: Draws class-balanced batches.
        config: The re-training recipe.
        task: Its loss (plain: the batches balance the classes).
        device: Where to train.

    Returns:
        The weight sets with their new heads, and each one's re-training history.
    """
    set_rng_state(trained.random_state)
    models = weight_set_models(trained, spec)
    transform = make_job_transform(data)
    loader = make_train_loader(data, transform, device, config.seed, sampler=sampler)
    val_loader = make_val_loader(data, data.batch_size, device, config.seed)
    histories = {name: retrain_classifier(model, loader, val_loader, config, task, device,
                                          phase=f"crt_{name}", batch_transform=transform.batch)
                 for name, model in models.items()}
    return TrainedWeights({name: state_on_cpu(model) for name, model in models.items()},
                          trained.history, trained.random_state, retraining=histories)


def _last_val_figures(history: pd.DataFrame, prefix: str = "val_") -> dict[str, float] | None:
    """Validation figures of the last epoch: training measured them after it."""
    if f"{prefix}loss" not in history:
        return None
    last = history.iloc[-1]
    return {key: float(last[f"{prefix}{key}"]) for key in VAL_FIGURES}


def final_validation(trained: TrainedWeights, spec: ModelSpec, data: DataSpec,
                     device: torch.device) -> dict[str, dict[str, float] | None]:
    """Each weight set's validation loss, top-1 and balanced accuracy as it ends the stage.

    Re-trained sets and the final and EMA weights take the figures their last epoch
    measured; SWA's weights, whose BatchNorm statistics were recomputed after training,
    are measured anew. None without a validation split.
    """
    val_loader = make_val_loader(data, data.batch_size, device, seed=0)
    figures: dict[str, dict[str, float] | None] = {}
    for name, state in trained.weights.items():
        if name in trained.retraining:
            figures[name] = _last_val_figures(trained.retraining[name])
        elif name == "final" or (name == "ema" and val_loader is not None):
            figures[name] = _last_val_figures(trained.history,
                                              "val_" if name == "final" else "val_ema_")
        elif val_loader is None:
            figures[name] = None
        else:
            model = _filled_model(spec, state).to(device)
            figures[name] = validation_metrics(*predict_logits(model, val_loader, device))
    return figures


def stage_history(trained: TrainedWeights, epochs: int) -> pd.DataFrame:
    """The run's history, the final weights' classifier re-training following it on the
    same epoch axis (epochs ``epochs + 1`` on)."""
    retrained = trained.retraining.get("final")
    if retrained is None:
        return trained.history
    return pd.concat([trained.history, retrained.assign(epoch=retrained["epoch"] + epochs)],
                     ignore_index=True)
