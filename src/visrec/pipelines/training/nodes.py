"""Nodes of the training pipeline: the model's input config, the training run, classifier
re-training when the balance plan asks for it, and the weight sets with their configs."""

import logging
from dataclasses import replace

import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from visrec.core.augment import AugmentationSpec
from visrec.core.balance import BalancePlan
from visrec.core.data import ImageCache, IngestionReport
from visrec.core.evaluate import predict_logits, validation_metrics
from visrec.core.models import (
    BalanceSummary,
    ModelInputs,
    WeightSet,
    WeightSetConfig,
    make_classifier,
    model_inputs,
    select_device,
)
from visrec.core.plots import learning_curve_figure
from visrec.core.train import (
    CheckpointStore,
    LiveLog,
    TrainedWeights,
    git_commit,
    make_job_transform,
    make_train_loader,
    make_val_loader,
    retrain_classifier,
    set_rng_state,
    state_on_cpu,
    train,
)
from visrec.params import TrainingParams

logger = logging.getLogger(__name__)


def resolve_model_inputs(ingestion_report: IngestionReport, model: str,
                         image_size: int | None) -> ModelInputs:
    """Input size, normalisation and interpolation of ``training.model`` for the images.

    Args:
        ingestion_report: Gives the classes and the channels.
        model: ``training.model``.
        image_size: ``training.image_size``; None takes the model's own.
    """
    return model_inputs(model, image_size, len(ingestion_report.classes),
                        ingestion_report.channels)


def train_model(manifest: pd.DataFrame, cache: ImageCache, ingestion_report: IngestionReport,
                balance_plan: BalancePlan, augmentation_spec: AugmentationSpec,
                model_inputs: ModelInputs, params: TrainingParams, seed: int,
                checkpoints: CheckpointStore, live: LiveLog) -> TrainedWeights:
    """Train ``training.model`` on the train split, validating on val each epoch.

    Args:
        manifest: The ingestion manifest.
        cache: The packed images the manifest's ``cache_index`` points into.
        ingestion_report: Gives the image root, the classes and the channels.
        balance_plan: The sampler, loss and class weights to apply.
        augmentation_spec: The training transform to rebuild.
        model_inputs: The model's input config.
        params: The ``training`` block.
        seed: Seeds initialisation, sampling and augmentation.
        checkpoints: Where each epoch's checkpoint goes; ``resume: auto`` continues from it.
        live: Logs each epoch's metrics with dvclive.

    Returns:
        The weight sets ``final`` and, when on, ``swa`` and ``ema``, and the history.
    """
    device = select_device(params.device)
    if cache.enabled and cache.settings.resolution < model_inputs.image_size:
        logger.warning("packed cache holds %dpx images, below the training size %dpx: "
                       "images are upsampled; raise ingestion.cache.resolution",
                       cache.settings.resolution, model_inputs.image_size)
    if params.resume == "never":
        checkpoints.clear()
    recorded = {"model": params.model, "epochs": params.epochs,
                "batch_size": params.batch_size, "lr": params.lr, "seed": seed,
                "augmentation": augmentation_spec.policy,
                "class_balance": balance_plan.strategy}
    job = replace(params.job(manifest, cache, ingestion_report, balance_plan,
                             augmentation_spec, model_inputs, seed, device),
                  checkpoints=checkpoints, live=live.with_params(recorded))
    logger.info("training %s on %s x %d: %d train / %d val images, %d classes, %dpx, from %s; "
                "augmentation %s", params.model, device,
                job.launch.nproc_per_node if job.launch else 1, len(job.data.train),
                len(job.data.val), len(ingestion_report.classes), model_inputs.image_size,
                "the packed cache" if cache.enabled else "the image files",
                augmentation_spec.policy)
    result = train(job)
    if result is None:
        raise RuntimeError("training ran on other machines' processes only: run the "
                           "training pipeline on the machine of rank 0 for the artifacts")
    return result


def _models(trained: TrainedWeights, architecture: str,
            report: IngestionReport) -> dict[str, nn.Module]:
    """The weight sets as models, each made anew and then filled."""
    models = {}
    for name, state in trained.weights.items():
        models[name] = make_classifier(architecture, len(report.classes), None, report.channels)
        models[name].load_state_dict(state)
    return models


def retrain_classifiers(trained_weights: TrainedWeights, manifest: pd.DataFrame,
                        cache: ImageCache, ingestion_report: IngestionReport,
                        balance_plan: BalancePlan, augmentation_spec: AugmentationSpec,
                        model_inputs: ModelInputs, params: TrainingParams,
                        seed: int) -> TrainedWeights:
    """Classifier re-training of every weight set when the balance plan asks for it (cRT,
    Kang et al. 2020): a new head on each frozen backbone, on class-balanced batches.

    It continues the run from the random state training ended with, so it draws the same
    heads whether it runs right after training or on its own.

    Returns:
        The weight sets with their new heads and the re-training histories; the input
        unchanged when the plan has no classifier re-training.
    """
    recipe = params.crt_recipe(balance_plan, len(ingestion_report.classes), seed)
    if recipe is None or balance_plan.crt is None:  # (the one implies the other)
        return trained_weights
    config, task = recipe
    device = select_device(params.device)
    set_rng_state(trained_weights.random_state)
    models = _models(trained_weights, params.model, ingestion_report)
    data = params.data(manifest, cache, ingestion_report, balance_plan,
                       augmentation_spec.single_view(), model_inputs)
    transform = make_job_transform(data)
    loader = make_train_loader(data, transform, device, seed, sampler=balance_plan.crt.sampler)
    val_loader = make_val_loader(data, params.batch_size, device, seed)
    histories = {name: retrain_classifier(model, loader, val_loader, config, task, device,
                                          phase=f"crt_{name}", batch_transform=transform.batch)
                 for name, model in models.items()}
    return TrainedWeights({name: state_on_cpu(model) for name, model in models.items()},
                          trained_weights.history, trained_weights.random_state,
                          retraining=histories)


def _last_val_metrics(history: pd.DataFrame, prefix: str = "val_") -> dict[str, float] | None:
    """Validation metrics of the last epoch: training evaluated them after it."""
    if f"{prefix}loss" not in history:
        return None
    last = history.iloc[-1]
    return {key: float(last[f"{prefix}{key}"]) for key in ("loss", "top1", "balanced_accuracy")}


def make_weight_sets(retrained_weights: TrainedWeights, manifest: pd.DataFrame,
                     cache: ImageCache, ingestion_report: IngestionReport,
                     balance_plan: BalancePlan, augmentation_spec: AugmentationSpec,
                     model_inputs: ModelInputs, params: TrainingParams,
                     seed: int) -> tuple[dict[str, WeightSet], pd.DataFrame]:
    """The weight sets with their configs, and the history of the whole stage.

    Each config says how to rebuild the model (architecture, classes, input config) and
    how it was made (parameters, augmentation, balance remedy, seed, git commit), with its
    last validation figures: from training's history, from classifier re-training, or,
    for SWA's weights (whose BatchNorm statistics were recomputed), measured anew.

    Returns:
        ``(trained_models, history)``: weight sets by name; one row per epoch, classifier
        re-training of the final weights following on the same epoch axis.
    """
    trained = retrained_weights
    history, retraining = trained.history, trained.retraining
    device = select_device(params.device)
    data = params.data(manifest, cache, ingestion_report, balance_plan, augmentation_spec,
                       model_inputs)
    val_loader = make_val_loader(data, params.batch_size, device, seed)
    val_metrics = {}
    for name, state in trained.weights.items():
        if name in retraining:
            val_metrics[name] = _last_val_metrics(retraining[name])
        elif name == "final" or (name == "ema" and val_loader is not None):
            val_metrics[name] = _last_val_metrics(history, "val_" if name == "final"
                                                  else "val_ema_")
        elif val_loader is None:
            val_metrics[name] = None
        else:  # SWA: its BatchNorm statistics were recomputed after training; measure anew
            model = make_classifier(params.model, len(ingestion_report.classes), None,
                                    ingestion_report.channels)
            model.load_state_dict(state)
            val_metrics[name] = validation_metrics(*predict_logits(model.to(device),
                                                                   val_loader, device))
    if "final" in retraining:  # one epoch axis: the final weights' re-training follows
        history = pd.concat([history, retraining["final"].assign(
            epoch=retraining["final"]["epoch"] + params.epochs)], ignore_index=True)
    base = dict(architecture=params.model, classes=ingestion_report.classes,
                **model_inputs.to_json(), seed=seed, git_commit=git_commit(),
                training=params.model_dump(), augmentation=augmentation_spec,
                class_balance=BalanceSummary(strategy=balance_plan.strategy,
                                             components=balance_plan.components,
                                             reason=balance_plan.reason))
    weight_sets = {name: WeightSet(trained.weights[name], WeightSetConfig(
        **base, weights=name, val_metrics=val_metrics[name])) for name in trained.weights}
    return weight_sets, history


def plot_learning_curve(history: pd.DataFrame) -> Figure:
    """Loss and accuracy per epoch, training and validation."""
    return learning_curve_figure(history)
