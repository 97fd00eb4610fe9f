"""Nodes of the training pipeline."""

import logging

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.utils.data import DataLoader, Dataset

from visrec.core.cache import ImageCache
from visrec.core.data import make_loader, manifest_dataset
from visrec.core.engine import (
    FitConfig,
    evaluate,
    fit,
    retrain_classifier,
    seed_everything,
    swa_start_epoch,
)
from visrec.core.losses import LossSpec, loss_spec
from visrec.core.models import (
    create_classifier,
    resolve_input_config,
    select_device,
    weights_artifact,
)
from visrec.core.plots import learning_curve_figure
from visrec.core.provenance import git_commit
from visrec.core.samplers import make_sampler
from visrec.core.transforms import build_eval_transform, build_train_transform
from visrec.params import TrainingParams

logger = logging.getLogger(__name__)

LR_REFERENCE_BATCH = 256  # `training.lr` is the rate for 256 images (Goyal et al. 2017)


def fit_config(params: TrainingParams, balance_plan: dict) -> FitConfig:
    """The recipe, with learning rates scaled linearly from 256 images to the batch size."""
    scale = params.batch_size / LR_REFERENCE_BATCH
    return FitConfig(
        epochs=params.epochs, lr=params.lr * scale, momentum=params.momentum,
        weight_decay=params.weight_decay, warmup_epochs=params.warmup_epochs,
        loss=loss_spec(balance_plan["loss"], balance_plan["class_weights"],
                       params.label_smoothing, params.epochs),
        swa_start=swa_start_epoch(params.epochs, params.swa.start_fraction)
        if params.swa.enabled else None,
        swa_lr=params.swa.lr * scale, swa_anneal_epochs=params.swa.anneal_epochs)


def crt_config(params: TrainingParams, balance_plan: dict) -> FitConfig | None:
    """The classifier re-training recipe of the plan, or None: plain cross-entropy, since the
    class-balanced batches already balance the classes."""
    crt = balance_plan.get("crt")
    if crt is None:
        return None
    return FitConfig(epochs=crt["epochs"], lr=crt["lr"] * params.batch_size / LR_REFERENCE_BATCH,
                     momentum=params.momentum, weight_decay=params.weight_decay,
                     loss=LossSpec(label_smoothing=params.label_smoothing))


def _last_val_metrics(history: pd.DataFrame) -> dict[str, float] | None:
    """The final weights' validation metrics: ``fit`` evaluated them after the last epoch."""
    if "val_loss" not in history:
        return None
    last = history.iloc[-1]
    return {key: float(last[f"val_{key}"]) for key in ("loss", "top1", "balanced_accuracy")}


def _retrain_classifiers(weight_sets: dict[str, nn.Module], train_set: Dataset,
                         train_classes: np.ndarray, val_loader: DataLoader | None,
                         balance_plan: dict, params: TrainingParams, device: torch.device,
                         seed: int) -> dict[str, pd.DataFrame]:
    """Classifier re-training of every weight set when the plan asks for it (cRT).

    Returns:
        The re-training history of each weight set; empty without cRT.
    """
    crt = crt_config(params, balance_plan)
    if crt is None:
        return {}
    loader = make_loader(train_set, params.batch_size, device, seed, train=True,
                         num_workers=params.num_workers,
                         sampler=make_sampler(balance_plan["crt"]["sampler"], train_classes,
                                              seed))
    return {name: retrain_classifier(weights, loader, val_loader, crt, device,
                                     phase=f"crt_{name}")
            for name, weights in weight_sets.items()}


def train_model(manifest: pd.DataFrame, cache: ImageCache, ingestion_report: dict,
                balance_plan: dict, augmentation_spec: dict, params: TrainingParams,
                seed: int) -> tuple[dict[str, dict], pd.DataFrame, Figure]:
    """Train ``training.model`` on the train split, validating on val each epoch.

    Args:
        manifest: The ingestion manifest.
        cache: The packed images the manifest's ``cache_index`` points into.
        ingestion_report: Gives the image root, the classes and the channels.
        balance_plan: The sampler, loss, class weights and classifier re-training to apply.
        augmentation_spec: The training transform to rebuild.
        params: The ``training`` block.
        seed: Seeds initialisation, sampling and augmentation.

    Returns:
        ``(trained_models, history, learning_curve)``: weight sets ``final`` and, with SWA,
        ``swa``, each with its config; one history row per epoch; the curve figure.
    """
    seed_everything(seed)
    device = select_device(params.device)
    classes = ingestion_report["classes"]
    channels = ingestion_report["channels"]
    model = create_classifier(params.model, len(classes), params.pretrained_path, channels)
    inputs = resolve_input_config(model, params.image_size, channels)
    size, mean, std = inputs["image_size"], inputs["mean"], inputs["std"]
    if cache.enabled and cache.settings.resolution < size:
        logger.warning("packed cache holds %dpx images, below the training size %dpx: "
                       "images are upsampled; raise ingestion.cache.resolution",
                       cache.settings.resolution, size)
    train_tf = build_train_transform(augmentation_spec, size, mean, std, inputs["interpolation"])
    eval_tf = build_eval_transform(size, mean, std, inputs["interpolation"])
    root = ingestion_report["root"]
    train = manifest[manifest["split"] == "train"]
    val = manifest[manifest["split"] == "val"]
    train_set = manifest_dataset(train, cache, root, train_tf, channels)
    train_classes = train["class_index"].to_numpy()
    train_loader = make_loader(
        train_set, params.batch_size, device, seed, train=True, num_workers=params.num_workers,
        sampler=make_sampler(balance_plan["sampler"], train_classes, seed))
    val_loader = None if val.empty else make_loader(
        manifest_dataset(val, cache, root, eval_tf, channels),
        params.batch_size, device, seed, train=False, num_workers=params.num_workers)
    logger.info("training %s on %s: %d train / %d val images, %d classes, %dpx, from %s",
                params.model, device, len(train), len(val), len(classes), size,
                "the packed cache" if cache.enabled else "the image files")
    final, swa, history = fit(model, train_loader, val_loader,
                              fit_config(params, balance_plan), device)
    weight_sets = {"final": final} | ({} if swa is None else {"swa": swa})
    crt_histories = _retrain_classifiers(weight_sets, train_set, train_classes, val_loader,
                                         balance_plan, params, device, seed)
    val_metrics = {"final": _last_val_metrics(crt_histories.get("final", history))}
    if "swa" in crt_histories:
        val_metrics["swa"] = _last_val_metrics(crt_histories["swa"])
    elif swa is not None:  # its BatchNorm statistics were just recomputed: evaluate anew
        val_metrics["swa"] = None if val_loader is None else evaluate(swa, val_loader, device)
    if "final" in crt_histories:  # one epoch axis: the final weights' re-training follows
        history = pd.concat([history, crt_histories["final"].assign(
            epoch=crt_histories["final"]["epoch"] + params.epochs)], ignore_index=True)
    base_config = {"architecture": params.model, "classes": classes, **inputs,
                   "seed": seed, "git_commit": git_commit(),
                   "training": params.model_dump(), "augmentation": augmentation_spec,
                   "class_balance": {key: balance_plan[key]
                                     for key in ("strategy", "components", "reason")}}
    models = {name: weights_artifact(weights, base_config | {
        "weights": name, "val_metrics": val_metrics[name]})
        for name, weights in weight_sets.items()}
    return models, history, learning_curve_figure(history)
