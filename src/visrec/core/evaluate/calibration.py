"""Calibration: how far predicted probabilities are from observed frequencies, and the fix.

Expected calibration error (Naeini et al. 2015; Guo et al. 2017) bins test images by their
top-1 confidence into equal-width bins and averages ``|accuracy - confidence|`` weighted by
the bin's share of images. Temperature scaling (Guo et al. 2017) divides the logits by one
scalar ``T > 0``, fitted on the validation split by minimising the negative log-likelihood:
it changes no prediction (the arg max is the same) and only the confidence.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

logger = logging.getLogger(__name__)

ECE_BINS = 15  # Guo et al.'s choice; the figure most papers compare against
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0  # beyond these, the fit has gone astray


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities of ``logits / temperature`` (float64, rows sum to 1)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def reliability_table(probabilities: np.ndarray, labels: np.ndarray,
                      bins: int = ECE_BINS) -> pd.DataFrame:
    """Top-1 confidence against accuracy in ``bins`` equal-width confidence bins.

    A confidence on a bin edge goes to the lower bin (bins are ``(lo, hi]``), as in Guo et
    al.'s code; a confidence of exactly 0 cannot occur with softmax outputs.

    Args:
        probabilities: Predicted class probabilities, shape (N, K).
        labels: True class index per image, shape (N,).
        bins: Number of bins over (0, 1].

    Returns:
        One row per bin: ``bin``, ``lower``, ``upper``, ``images``, ``confidence`` (mean
        top-1 probability), ``accuracy`` (share of correct top-1), ``gap``
        (``accuracy - confidence``); empty bins have NaN means.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    images = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, minlength=bins) / images
        accuracy = np.bincount(index, correct, minlength=bins) / images
    return pd.DataFrame({"bin": np.arange(bins), "lower": edges[:-1], "upper": edges[1:],
                         "images": images, "confidence": mean_confidence,
                         "accuracy": accuracy, "gap": accuracy - mean_confidence})


def side_by_side(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Two reliability tables of the same bins in one, for ``dvc plots``.

    Returns:
        ``confidence`` (the bin centre), ``accuracy``, ``mean_confidence`` and ``images``
        of ``before``, the same of ``after`` suffixed ``_calibrated``, and ``ideal`` (the
        bin centre again: the diagonal of perfect calibration).
    """
    table = pd.DataFrame({"confidence": ((before["lower"] + before["upper"]) / 2).round(6)})
    for suffix, source in (("", before), ("_calibrated", after)):
        table[f"accuracy{suffix}"] = source["accuracy"]
        table[f"mean_confidence{suffix}"] = source["confidence"]
        table[f"images{suffix}"] = source["images"]
    table["ideal"] = table["confidence"]
    return table


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """ECE: the image-weighted mean of ``|accuracy - confidence|`` over the bins.

    Args:
        probabilities: Predicted class probabilities, shape (N, K).
        labels: True class index per image, shape (N,).
        bins: Number of equal-width confidence bins (15, as Guo et al.).
    """
    table = reliability_table(probabilities, labels, bins)
    filled = table["images"] > 0
    weights = table.loc[filled, "images"] / table["images"].sum()
    return float((weights * table.loc[filled, "gap"].abs()).sum())


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean ``-log p(true class)``; probabilities are floored at 1e-12 so that it is finite."""
    chosen = np.asarray(probabilities, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(-np.log(np.maximum(chosen, 1e-12)).mean())


def brier_score(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean over images of the squared distance to the one-hot label, summed over classes
    (Brier 1950, multi-class form: 0 is perfect, 2 the worst)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    onehot = np.zeros_like(probabilities)
    onehot[np.arange(len(labels)), labels] = 1.0
    return float(((probabilities - onehot) ** 2).sum(axis=1).mean())


def calibration_metrics(probabilities: np.ndarray, labels: np.ndarray,
                        bins: int = ECE_BINS) -> dict[str, float]:
    """``ece``, ``nll`` and ``brier`` of predicted probabilities."""
    return {"ece": expected_calibration_error(probabilities, labels, bins),
            "nll": negative_log_likelihood(probabilities, labels),
            "brier": brier_score(probabilities, labels)}


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 200) -> float:
    """The temperature ``T`` that minimises the NLL of ``softmax(logits / T)``.

    The fit optimises ``log T`` (so ``T`` stays positive) with L-BFGS in float64 on the
    whole split at once; the NLL is convex in ``1 / T``, so the optimum is unique.

    Args:
        logits: Validation logits, shape (N, K).
        labels: True class index per image, shape (N,).
        max_iter: L-BFGS iterations.

    Returns:
        ``T``, clipped to [0.05, 20]; 1.0 (no change) when there are no images, or when
        every image is classified correctly (the NLL then falls towards T = 0 with no
        finite optimum, and a near-zero T would make every test mistake look certain).
    """
    if len(labels) == 0:
        return 1.0
    if (np.asarray(logits).argmax(axis=1) == np.asarray(labels)).all():
        logger.warning("temperature scaling: all %d validation images are classified "
                       "correctly, so the NLL has no finite minimum; T is left at 1",
                       len(labels))
        return 1.0
    scores = torch.tensor(np.asarray(logits), dtype=torch.float64)
    targets = torch.tensor(np.asarray(labels), dtype=torch.int64)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    # Tolerances far below L-BFGS's defaults: with confident, mostly correct logits the
    # gradient at T = 1 is already below 1e-7, and the default would stop before moving.
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, tolerance_grad=1e-12,
                                  tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(scores / log_t.exp(), targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    if not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE:
        logger.warning("temperature scaling: the fitted T = %.4g is outside [%g, %g] and is "
                       "clipped; the validation split may be too small or all correct",
                       temperature, MIN_TEMPERATURE, MAX_TEMPERATURE)
    return float(np.clip(temperature, MIN_TEMPERATURE, MAX_TEMPERATURE))
