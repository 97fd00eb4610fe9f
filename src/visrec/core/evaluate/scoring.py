"""Scoring trained weight sets: logits per split, the comparison table, the served choice.

The functions here work on arrays and tables; the evaluation pipeline's nodes feed them
the manifest's rows and the trained weight sets.

Evaluation decodes the image files, as prediction does, rather than reading the packed
cache: the cache holds images already resized to a square a little above the training
size, and resizing them again for evaluation gives pixels that differ slightly from what
a served model sees. Test metrics and the temperature are measured on exactly the input
that prediction and the exported models get.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from visrec.core.augment import make_eval_transform
from visrec.core.data import ImageCache, make_loader, manifest_dataset
from visrec.core.evaluate.calibration import calibration_metrics, softmax
from visrec.core.evaluate.metrics import (
    balanced_accuracy,
    classification_metrics,
    group_accuracies,
)
from visrec.core.models import ModelInputs
from visrec.core.progress import progress

logger = logging.getLogger(__name__)

# Without a validation split, nothing measures the weight sets before test: serve the
# first of these that training produced (SWA is at least as good as the final weights in
# visrec's ablation, and EMA is an average too).
SERVE_FALLBACK = ("swa", "ema", "final")


def eval_loader_of(inputs: ModelInputs, rows: pd.DataFrame, root: str, batch_size: int,
                   device: torch.device, cache: ImageCache | None = None
                   ) -> torch.utils.data.DataLoader:
    """Batches of ``rows``' images through the evaluation transform of ``inputs``: the
    image files, or the packed ``cache`` when given."""
    transform = make_eval_transform(inputs.image_size, inputs.mean, inputs.std,
                                    inputs.interpolation)
    dataset = manifest_dataset(rows, cache, root, transform, inputs.in_chans)
    return make_loader(dataset, batch_size, device, seed=0, train=False)


@torch.no_grad()
def predict_logits(model: nn.Module, loader: DataLoader, device: torch.device,
                   desc: str = "validating") -> tuple[np.ndarray, np.ndarray]:
    """Logits (float32, N x K) and labels of every image in ``loader``, in order.

    Args:
        model: The model, already on ``device``; put in eval mode.
        loader: Batches of (images, class indices), not shuffled.
        device: Where batches go.
        desc: The progress bar's label (shown on a terminal only).
    """
    model.eval()
    logits, labels = [], []
    for images, targets in progress(loader, desc, unit="batch"):
        logits.append(model(images.to(device, non_blocking=True)).float().cpu())
        labels.append(targets)
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


@torch.no_grad()
def split_logits(models: dict[str, nn.Module], inputs: ModelInputs,
                 splits: dict[str, pd.DataFrame], root: str, batch_size: int,
                 device: torch.device, hflip: set[str]) -> dict[str, dict[str, np.ndarray]]:
    """Logits of several weight sets on each split's rows, each image decoded once.

    Args:
        models: Classifiers by weight-set name, on ``device``, sharing one input config.
        inputs: That input config (size, normalisation, interpolation, channels).
        splits: Manifest rows by split name; empty splits are left out.
        root: Folder the manifest's paths are relative to.
        batch_size: Images per batch.
        device: Where the models run.
        hflip: Weight sets that also get ``test_hflip``: the logits of the mirrored test
            images.

    Returns:
        ``{weights: {split: N x K float32}}`` in row order.
    """
    outputs: dict[str, dict[str, list[torch.Tensor]]] = {name: {} for name in models}
    for model in models.values():
        model.eval()
    for split, rows in splits.items():
        if rows.empty:
            continue
        loader = eval_loader_of(inputs, rows, root, batch_size, device)
        for batch, _ in progress(loader, f"scoring {split} ({len(models)} weight sets)",
                                 unit="batch"):
            images = batch.to(device, non_blocking=True)
            for name, model in models.items():
                outputs[name].setdefault(split, []).append(model(images).float().cpu())
                if split == "test" and name in hflip:
                    outputs[name].setdefault("test_hflip", []).append(
                        model(images.flip(-1)).float().cpu())
    return {name: {split: torch.cat(parts).numpy() for split, parts in by_split.items()}
            for name, by_split in outputs.items()}


def validation_metrics(logits: np.ndarray | None, labels: np.ndarray) -> dict[str, float]:
    """Cross-entropy, top-1 and balanced accuracy on validation (NaN without a split).

    These are the figures training logs per epoch, so the served choice uses the same scale.
    """
    if logits is None or len(labels) == 0:
        return {"loss": math.nan, "top1": math.nan, "balanced_accuracy": math.nan}
    loss = nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(labels))
    predicted = logits.argmax(axis=1)
    return {"loss": float(loss), "top1": float((predicted == labels).mean()),
            "balanced_accuracy": balanced_accuracy(labels, predicted)}


def metrics_on_test(logits: np.ndarray, labels: np.ndarray, temperature: float,
                    class_groups: list[str], bins: int) -> dict[str, float]:
    """Headline, shot-group and calibration metrics of one weight set on test.

    Calibration figures come before (``ece``, ``nll``, ``brier``) and after
    (``*_calibrated``) dividing the logits by ``temperature``; the accuracy figures do not
    depend on it.
    """
    raw = softmax(logits)
    calibrated = softmax(logits, temperature)
    metrics = classification_metrics(labels, raw)
    metrics |= group_accuracies(labels, raw.argmax(axis=1), class_groups)
    metrics |= calibration_metrics(raw, labels, bins)
    metrics |= {f"{k}_calibrated": v
                for k, v in calibration_metrics(calibrated, labels, bins).items()}
    return metrics | {"temperature": temperature}


def tta_metrics(logits: np.ndarray, flipped: np.ndarray, labels: np.ndarray,
                temperature: float, class_groups: list[str], bins: int) -> dict[str, float]:
    """Metrics of the mean calibrated probabilities of each test image and its mirror."""
    probabilities = (softmax(logits, temperature) + softmax(flipped, temperature)) / 2
    metrics = classification_metrics(labels, probabilities)
    metrics |= group_accuracies(labels, probabilities.argmax(axis=1), class_groups)
    return metrics | calibration_metrics(probabilities, labels, bins)


def choose_served(table: pd.DataFrame, requested: str, metric: str) -> str:
    """The weight set to serve: ``requested``, or the best on validation for ``auto``.

    Args:
        table: One row per weight set (``weights``) with ``val_<metric>`` columns.
        requested: ``auto`` or a weight-set name.
        metric: ``balanced_accuracy``, ``top1`` (higher is better) or ``loss`` (lower).

    Raises:
        ValueError: If ``requested`` names no weight set; the message lists them.
    """
    names = table["weights"].tolist()
    if requested != "auto":
        if requested not in names:
            raise ValueError(f"evaluation.serve = {requested!r}: no such weight set; "
                             f"accepted: 'auto' or one of {names}")
        return requested
    values = table[f"val_{metric}"].to_numpy(dtype=float)
    if np.isnan(values).all():
        chosen = next((n for n in SERVE_FALLBACK if n in names), names[0])
        logger.warning("evaluation: no validation split to choose the served weights by; "
                       "serving '%s'", chosen)
        return chosen
    # Best metric; ties go to the lower validation loss, then to the order of the table.
    key = -values if metric != "loss" else values
    order = np.lexsort((np.arange(len(names)), table["val_loss"].to_numpy(dtype=float),
                        np.nan_to_num(key, nan=np.inf)))
    return names[int(order[0])]


def comparison_table(metrics: dict[str, dict], validation: dict[str, dict],
                     served: str | None = None) -> pd.DataFrame:
    """One row per weight set: validation figures, test figures, and which one is served."""
    rows = []
    for name, values in metrics.items():
        flat = {k: v for k, v in values.items() if not isinstance(v, dict | bool)}
        rows.append({"weights": name, "served": name == served}
                    | {f"val_{k}": v for k, v in validation[name].items()} | flat)
    return pd.DataFrame(rows)
