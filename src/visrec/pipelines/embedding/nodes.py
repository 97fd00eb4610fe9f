"""Nodes of the embedding pipeline: the class-disjoint split, the embedder's and the
cross-entropy baseline's training runs, their embeddings and scores, the weight sets and
the served embedder."""

import logging
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from visrec.core.data import ImageCache, IngestionReport
from visrec.core.models import (
    EmbedderConfig,
    ModelInputs,
    NormalizedFeatures,
    WeightSet,
    make_classifier,
    make_embedder,
    model_inputs,
    select_device,
    trunk_features,
)
from visrec.core.retrieval import (
    ClassSplit,
    apply_split,
    choose_embedder,
    embed_splits,
    pooled_rows,
    score_embeddings,
    split_classes,
)
from visrec.core.seeding import seed_everything
from visrec.core.train import (
    CheckpointStore,
    LiveLog,
    TrainedWeights,
    TrainingJob,
    git_commit,
    train,
)
from visrec.params import MetricLearningParams

logger = logging.getLogger(__name__)

EVAL_BATCH = 256


def make_class_split(manifest: pd.DataFrame, quarantine: pd.DataFrame, cache: ImageCache,
                     ingestion_report: IngestionReport, params: MetricLearningParams
                     ) -> tuple[pd.DataFrame, ClassSplit]:
    """Split the classes (not the images) into train, val and test.

    Args:
        manifest: The ingestion manifest.
        quarantine: Its quarantine table (images of classes without training images are
            the unseen classes here).
        cache: The packed cache (its index gives those images' slots).
        ingestion_report: Says which splits ingestion carved (not given by the folder).
        params: The ``metric_learning`` block.

    Returns:
        ``(manifest, split)``: rows with ``split`` by class and ``class_index`` within the
        split; the class sets.
    """
    rows = pooled_rows(manifest, quarantine, cache.index, ingestion_report.carved_splits)
    split = split_classes(rows, params.split.test_classes, params.split.val_classes)
    table = apply_split(rows, split)
    params.check_classes(table.loc[table["split"] == "train", "label"].value_counts()
                         .to_dict())
    logger.info("metric learning: classes %s (%s): %d train, %d val, %d test; images %s",
                "as the folders give them" if split.source == "folders" else "split",
                split.source, len(split.train), len(split.val), len(split.test),
                table["split"].value_counts().to_dict())
    return table, split


def resolve_embedding_inputs(ingestion_report: IngestionReport, model: str,
                             image_size: int | None) -> ModelInputs:
    """Input size, normalisation and interpolation of ``metric_learning.model``."""
    return model_inputs(model, image_size, 1, ingestion_report.channels)


def _train(job_name: str, job: TrainingJob) -> TrainedWeights:
    result = train(job)
    if result is None:
        raise RuntimeError(f"{job_name} ran on other machines' processes only: run the "
                           "pipeline on the machine of rank 0 for the artifacts")
    return result


def train_embedder(manifest: pd.DataFrame, cache: ImageCache, ingestion_report: IngestionReport,
                   class_split: ClassSplit, inputs: ModelInputs, params: MetricLearningParams,
                   seed: int, checkpoints: CheckpointStore, live: LiveLog) -> TrainedWeights:
    """Train the embedder on P x K batches of the training classes, validating by MAP@R
    among the validation classes after each epoch.

    Returns:
        The weight sets ``final`` (and ``swa``, ``ema``) without the loss, and the history.
    """
    device = select_device(params.device, key="metric_learning.device")
    if params.resume == "never":
        checkpoints.clear()
    job = params.embedder_job(manifest, cache, ingestion_report, inputs,
                              len(class_split.train), seed, device)
    recorded = {"model": params.model, "loss": params.metric_loss().canonical(),
                "epochs": params.epochs, "batch_size": params.batch_size,
                "m_per_class": params.m_per_class, "lr": params.lr, "seed": seed,
                "augmentation": job.data.augmentation.policy}
    job = replace(job, checkpoints=checkpoints, live=live.with_params(recorded))
    logger.info("metric learning: %s with %s on %s, %d train / %d val images, batches of %d "
                "classes x %d", params.model, recorded["loss"], device, len(job.data.train),
                len(job.data.val), params.batch_size // params.m_per_class,
                params.m_per_class)
    return _train("metric learning", job)


def train_baseline(manifest: pd.DataFrame, cache: ImageCache, ingestion_report: IngestionReport,
                   class_split: ClassSplit, inputs: ModelInputs, params: MetricLearningParams,
                   seed: int, checkpoints: CheckpointStore) -> dict[str, torch.Tensor]:
    """The cross-entropy baseline's classifier weights (empty when not asked for)."""
    if "cross_entropy" not in params.baselines:
        return {}
    device = select_device(params.device, key="metric_learning.device")
    if params.resume == "never":
        checkpoints.clear()
    job = replace(params.baseline_job(manifest, cache, ingestion_report, inputs,
                                      len(class_split.train), seed, device),
                  checkpoints=checkpoints)
    logger.info("metric learning baseline: a cross-entropy classifier of the %d training "
                "classes, same budget", len(class_split.train))
    return _train("the cross-entropy baseline", job).weights["final"]


def _models(trained: TrainedWeights, params: MetricLearningParams, channels: int
            ) -> dict[str, nn.Module]:
    models: dict[str, nn.Module] = {}
    for name, weights in trained.weights.items():
        model = make_embedder(params.model, params.embedding_size,
                              params.embedding_batch_norm, in_chans=channels,
                              output=params.output)
        model.load_state_dict(weights)
        models[name] = model.eval()
    return models


def embed_evaluation_splits(trained: TrainedWeights, baseline_weights: dict[str, torch.Tensor],
                            manifest: pd.DataFrame, cache: ImageCache,
                            ingestion_report: IngestionReport, class_split: ClassSplit,
                            inputs: ModelInputs, params: MetricLearningParams, seed: int
                            ) -> dict[str, dict[str, np.ndarray]]:
    """Every weight set's and baseline's embeddings of the val and test images.

    Returns:
        ``{name: {split: N x D array}}`` for ``final`` (``swa``, ``ema``) and the baselines
        ``untrained`` (the trunk as initialised, or from ``pretrained_path``) and
        ``cross_entropy`` (its classifier's penultimate features).
    """
    device = select_device(params.device, key="metric_learning.device")
    channels = ingestion_report.channels
    models = _models(trained, params, channels)
    if "untrained" in params.baselines:
        seed_everything(seed)  # the same initialisation as the embedder's trunk
        models["untrained"] = trunk_features(params.model, params.pretrained_path, channels,
                                             pretrained=params.pretrained)
    if baseline_weights:
        classifier = make_classifier(params.model, len(class_split.train), in_chans=channels)
        classifier.load_state_dict(baseline_weights)
        models["cross_entropy"] = NormalizedFeatures(classifier).eval()
    return embed_splits(models, manifest, cache, ingestion_report.root, inputs, EVAL_BATCH,
                        device)


def score_embedders(embeddings: dict[str, dict[str, np.ndarray]], manifest: pd.DataFrame,
                    class_split: ClassSplit, params: MetricLearningParams) -> dict[str, Any]:
    """Test and validation figures of every weight set and baseline, and the one to serve.

    Returns:
        ``metric_learning_metrics``: one object per weight set, the baselines under
        ``baselines``, ``served``, and the class counts of the split.
    """
    scores = score_embeddings(embeddings, manifest, backend=params.knn)
    sets = [name for name in ("final", "swa", "ema") if name in scores]
    served = choose_embedder(scores, sets, params.serve)
    for name, figures in scores.items():
        logger.info("metric learning %-13s test MAP@R %.4f, R-Precision %.4f, P@1 %.4f", name,
                    figures["mean_average_precision_at_r"], figures["r_precision"],
                    figures["precision_at_1"])
    return {**{name: scores[name] for name in sets},
            "baselines": {name: scores[name] for name in scores if name not in sets},
            "served": served,
            "classes": {"train": len(class_split.train), "val": len(class_split.val),
                        "test": len(class_split.test), "source": class_split.source}}


def make_embedder_sets(trained: TrainedWeights, metrics: dict[str, Any],
                       class_split: ClassSplit, inputs: ModelInputs,
                       params: MetricLearningParams, seed: int
                       ) -> tuple[dict[str, WeightSet], pd.DataFrame]:
    """The weight sets with their configs (with their validation figures), and the run's
    history."""
    base = dict(architecture=params.model, embedding_size=params.embedding_size,
                batch_norm=params.embedding_batch_norm, output=params.output,
                loss=params.metric_loss().canonical(),
                train_classes=class_split.train, seed=seed, git_commit=git_commit(),
                metric_learning=params.model_dump(), augmentation=params.augmentation_spec(),
                **inputs.to_json())
    sets = {}
    for name, weights in trained.weights.items():
        val = {key.removeprefix("val_"): value for key, value in metrics[name].items()
               if key.startswith("val_")}
        sets[name] = WeightSet(weights, EmbedderConfig(**base, weights=name,
                                                       val_metrics=val or None))
    return sets, trained.history


def serve_embedder(embedding_models: dict[str, WeightSet], metrics: dict[str, Any]
                   ) -> WeightSet:
    """The weight set to serve (``metrics["served"]``), with its figures."""
    name = metrics["served"]
    chosen = embedding_models[name]
    config = chosen.config.model_copy(update={"served_from": name, "scores": metrics[name]})
    return WeightSet(chosen.weights, config)
