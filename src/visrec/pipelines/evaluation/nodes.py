"""Nodes of the evaluation pipeline."""

import logging

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from visrec.core.balance import class_list
from visrec.core.cache import ImageCache
from visrec.core.data import make_loader, manifest_dataset
from visrec.core.engine import predict
from visrec.core.metrics import (
    classification_metrics,
    confusion,
    group_accuracies,
    per_class_report,
)
from visrec.core.models import model_from_artifact, select_device
from visrec.core.plots import confusion_figure
from visrec.core.transforms import build_eval_transform
from visrec.params import EvaluationParams

logger = logging.getLogger(__name__)


def _test_probabilities(artifact: dict, test: pd.DataFrame, cache: ImageCache, root: str,
                        params: EvaluationParams) -> np.ndarray:
    config = artifact["config"]
    device = select_device(params.device, key="evaluation.device")
    model = model_from_artifact(artifact).to(device)
    transform = build_eval_transform(config["image_size"], config["mean"], config["std"],
                                     config["interpolation"])
    dataset = manifest_dataset(test, cache, root, transform, int(config.get("in_chans", 3)))
    loader = make_loader(dataset, params.batch_size, device, seed=0, train=False)
    logits, _ = predict(model, loader, device)
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy()


def evaluate_models(trained_models: dict[str, dict], manifest: pd.DataFrame,
                    cache: ImageCache | None, ingestion_report: dict,
                    class_counts: pd.DataFrame, params: EvaluationParams
                    ) -> tuple[dict, pd.DataFrame, Figure, pd.DataFrame]:
    """Score every weight set on the test split.

    Args:
        trained_models: Weight sets by name (``final``, ``swa``), each with its config.
        manifest: The ingestion manifest; its ``test`` rows are scored.
        cache: The packed images the manifest's ``cache_index`` points into.
        ingestion_report: Gives the image root and the classes.
        class_counts: Training images and many/medium/few-shot group of each class.
        params: The ``evaluation`` block.

    Returns:
        ``(metrics, per_class, confusion_plot, predictions)``: headline metrics per weight
        set, accuracy per shot group included; per-class precision/recall/F1/support, group
        and training images per weight set; confusion matrices; one row per test image
        with ``predicted_<weights>`` and ``confidence_<weights>``.
    """
    if not trained_models:
        raise ValueError("evaluation: no trained weights in data/06_models/classifier; "
                         "run the training pipeline first")
    test = manifest[manifest["split"] == "test"]
    if test.empty:
        raise ValueError("evaluation: the manifest has no test images; set "
                         "ingestion.test_fraction > 0 or add a test/ folder")
    classes = ingestion_report["classes"]
    labels = test["class_index"].to_numpy()
    groups = class_counts.set_index("label").loc[classes, ["train", "group"]]
    untested = [c for c, n in zip(classes, np.bincount(labels, minlength=len(classes)),
                                  strict=True) if n == 0]
    if untested:
        logger.warning("evaluation: classes %s have no test image: their accuracy is not "
                       "measured, and balanced accuracy and group accuracy leave them out",
                       class_list(untested))
    metrics, reports, matrices = {}, [], {}
    # One column pair per weight set, so each gets its own `dvc plots` confusion matrix.
    predictions = pd.DataFrame({"path": test["path"].to_numpy(),
                                "actual": test["label"].to_numpy()})
    for name, artifact in trained_models.items():
        probabilities = _test_probabilities(artifact, test, cache, ingestion_report["root"],
                                            params)
        predicted = probabilities.argmax(axis=1)
        metrics[name] = classification_metrics(labels, probabilities) | group_accuracies(
            labels, predicted, groups["group"].tolist())
        reports.append(per_class_report(labels, predicted, classes).assign(
            group=groups["group"].to_numpy(), train_images=groups["train"].to_numpy(),
            weights=name))
        matrices[name] = confusion(labels, predicted, len(classes))
        predictions[f"predicted_{name}"] = np.asarray(classes)[predicted]
        predictions[f"confidence_{name}"] = probabilities.max(axis=1).round(6)
        logger.info("%s weights on %d test images: %s", name, len(test),
                    ", ".join(f"{k}={v:.4g}" for k, v in metrics[name].items()))
    return (metrics, pd.concat(reports, ignore_index=True), confusion_figure(matrices, classes),
            predictions)
