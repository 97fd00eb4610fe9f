"""Nodes of the training pipeline: the model's input config, the training run, classifier
re-training when the balance plan asks for it, and the weight sets with their configs."""

import logging
from dataclasses import replace
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from visrec.core.augment import AugmentationSpec, SearchChoice
from visrec.core.balance import BalancePlan, make_balance_plan
from visrec.core.data import ImageCache, IngestionReport
from visrec.core.models import (
    BalanceSummary,
    ModelInputs,
    WeightSet,
    WeightSetConfig,
    model_inputs,
    select_device,
)
from visrec.core.plots import learning_curve_figure
from visrec.core.train import (
    CheckpointStore,
    LiveLog,
    TrainedWeights,
    final_validation,
    git_commit,
    stage_history,
    train,
)
from visrec.core.train import retrain_classifiers as core_retrain
from visrec.params import AugmentationParams, ClassBalanceParams, TrainingParams
from visrec.params.tuning import merged, settings_digest

logger = logging.getLogger(__name__)


def apply_tuned_parameters(
        tuned_parameters: dict[str, Any], tuning_enabled: bool, class_counts: pd.DataFrame,
        balance_plan: BalancePlan, augmentation_spec: AugmentationSpec,
        training: TrainingParams, class_balance: ClassBalanceParams,
        augmentation: AugmentationParams) -> tuple[TrainingParams, BalancePlan,
                                                   AugmentationSpec]:
    """The settings of the run: the configured ones, with the keys the tuning chose.

    Args:
        tuned_parameters: The tuning's choice (``training``, ``augmentation.policy`` and
            ``class_balance.strategy`` keys); only ``search`` when tuning is off.
        tuning_enabled: ``tuning.enabled``: false trains the configured settings whatever
            the file holds.
        class_counts: Images per class and split (a chosen strategy's plan).
        balance_plan: The configured balance plan.
        augmentation_spec: The configured policy.
        training: The ``training`` block.
        class_balance: The ``class_balance`` block.
        augmentation: The ``augmentation`` block.

    Returns:
        ``(training, balance_plan, augmentation_spec)`` for the run.

    Raises:
        ValueError: If the choice was made for other settings than the configured ones
            (the training pipeline run alone after a parameter changed).
    """
    search = tuned_parameters.get("search", {})
    if not tuning_enabled:
        return training, balance_plan, augmentation_spec
    based_on = search.get("based_on")
    if based_on is not None and based_on != settings_digest(training, class_balance,
                                                            augmentation):
        raise ValueError(
            f"tuned_parameters (trial {search.get('trial')} of study {search.get('study')}) "
            "were chosen for other training, class_balance or augmentation settings than "
            "these: run the tuning again first (kedro run --pipelines=train, or dvc repro), "
            "or give tuning.enabled=false to train with the configured settings")
    if "training" in tuned_parameters:
        training = TrainingParams.model_validate(
            merged(training.model_dump(), tuned_parameters["training"]))
    strategy = tuned_parameters.get("class_balance", {}).get("strategy")
    if strategy is not None:
        chosen = ClassBalanceParams.model_validate(class_balance.model_dump()
                                                   | {"strategy": strategy})
        balance_plan = make_balance_plan(class_counts, chosen.settings())
    policy = tuned_parameters.get("augmentation", {}).get("policy")
    if policy is not None:
        augmentation_spec = augmentation.spec(policy, "tuned_parameters: augmentation.policy")
        augmentation_spec = augmentation_spec.model_copy(update={"search": SearchChoice(
            candidate=int(search.get("trial", -1)), written=policy)})
    if "trial" in search:
        logger.info("training with the settings of tuning trial %d of study %s (%.3f +- "
                    "%.3f): %s", search["trial"], search.get("study"), search.get("value"),
                    search.get("standard_error"),
                    {key: value for key, value in tuned_parameters.items() if key != "search"})
    return training, balance_plan, augmentation_spec


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


def retrain_classifiers(trained_weights: TrainedWeights, manifest: pd.DataFrame,
                        cache: ImageCache, ingestion_report: IngestionReport,
                        balance_plan: BalancePlan, augmentation_spec: AugmentationSpec,
                        model_inputs: ModelInputs, params: TrainingParams,
                        seed: int) -> TrainedWeights:
    """Classifier re-training of every weight set when the balance plan asks for it (cRT,
    Kang et al. 2020): a new head on each frozen backbone, on class-balanced batches.

    Returns:
        The weight sets with their new heads and the re-training histories; the input
        unchanged when the plan has no classifier re-training.
    """
    recipe = params.crt_recipe(balance_plan, len(ingestion_report.classes), seed)
    if recipe is None or balance_plan.crt is None:  # (the one implies the other)
        return trained_weights
    config, task = recipe
    data = params.data(manifest, cache, ingestion_report, balance_plan,
                       augmentation_spec.single_view(), model_inputs)
    return core_retrain(trained_weights, params.model_spec(ingestion_report), data,
                        balance_plan.crt.sampler, config, task, select_device(params.device))


def make_weight_sets(retrained_weights: TrainedWeights, manifest: pd.DataFrame,
                     cache: ImageCache, ingestion_report: IngestionReport,
                     balance_plan: BalancePlan, augmentation_spec: AugmentationSpec,
                     model_inputs: ModelInputs, params: TrainingParams,
                     seed: int) -> tuple[dict[str, WeightSet], pd.DataFrame]:
    """The weight sets with their configs, and the history of the whole stage.

    Each config says how to rebuild the model (architecture, classes, input config) and
    how it was made (parameters, augmentation, balance remedy, seed, git commit), with its
    last validation figures.

    Returns:
        ``(trained_models, history)``: weight sets by name; one row per epoch, classifier
        re-training of the final weights following on the same epoch axis.
    """
    data = params.data(manifest, cache, ingestion_report, balance_plan, augmentation_spec,
                       model_inputs)
    val_figures = final_validation(retrained_weights, params.model_spec(ingestion_report),
                                   data, select_device(params.device))
    base = dict(architecture=params.model, classes=ingestion_report.classes,
                **model_inputs.to_json(), seed=seed, git_commit=git_commit(),
                training=params.model_dump(), augmentation=augmentation_spec,
                class_balance=BalanceSummary(strategy=balance_plan.strategy,
                                             components=balance_plan.components,
                                             reason=balance_plan.reason))
    weight_sets = {name: WeightSet(weights, WeightSetConfig(
        **base, weights=name, val_metrics=val_figures[name]))
        for name, weights in retrained_weights.weights.items()}
    return weight_sets, stage_history(retrained_weights, params.epochs)


def plot_learning_curve(history: pd.DataFrame) -> Figure:
    """Loss and accuracy per epoch, training and validation."""
    return learning_curve_figure(history)
