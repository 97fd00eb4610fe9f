"""Retrieval figures of embeddings, the honest way (Musgrave et al. 2020): every image is a
query against all the others, itself excluded; Precision@1, R-Precision and MAP@R from
pytorch-metric-learning's ``AccuracyCalculator`` with ``k = max_bin_count``, and the same
per class."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from visrec.core.retrieval.knn import KnnSearch, knn

RETRIEVAL_METRICS = ("precision_at_1", "r_precision", "mean_average_precision_at_r")


def _checked(embeddings: torch.Tensor, labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if len(embeddings) != len(labels):
        raise ValueError(f"{len(embeddings)} embeddings but {len(labels)} labels")
    counts = np.unique(labels, return_counts=True)[1]
    if len(counts) < 2 or counts.max() < 2:
        raise ValueError("retrieval figures need at least 2 classes and a class with 2 images; "
                         f"got {len(counts)} classes of at most {counts.max(initial=0)} images")
    return labels


def retrieval_metrics(embeddings: torch.Tensor, labels: np.ndarray, *, backend: str = "torch",
                      batch_size: int = 1024) -> dict[str, float]:
    """Precision@1, R-Precision and MAP@R with every image a query against all the others.

    Args:
        embeddings: ``N x D`` unit-length embeddings.
        labels: The class of each row.
        backend: k-NN backend (``torch`` or ``faiss``).
        batch_size: Queries per k-NN batch.

    Returns:
        The three figures, ``num_query_images`` and ``num_classes``.
    """
    from pytorch_metric_learning.utils.accuracy_calculator import (  # noqa: PLC0415
        AccuracyCalculator,
    )

    labels = _checked(embeddings, labels)
    calculator = AccuracyCalculator(include=RETRIEVAL_METRICS, k="max_bin_count",
                                    knn_func=KnnSearch(backend, batch_size))
    codes = torch.from_numpy(np.unique(labels, return_inverse=True)[1].astype(np.int64))
    vectors = embeddings.detach().float().cpu()
    figures = calculator.get_accuracy(vectors, codes, vectors, codes, ref_includes_query=True)
    return {**{name: float(figures[name]) for name in RETRIEVAL_METRICS},
            "num_query_images": len(labels), "num_classes": len(np.unique(labels))}


def per_query_figures(embeddings: torch.Tensor, labels: np.ndarray, *, backend: str = "torch",
                      batch_size: int = 1024) -> pd.DataFrame:
    """Each query's Precision@1, R-Precision and average precision at R (R: the other
    images of its class), against all the other images.

    Returns:
        One row per image: ``label``, ``r``, and the three figures (NaN where R is 0).
    """
    labels = _checked(embeddings, labels)
    _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    relevant = counts[codes] - 1
    depth = int(relevant.max())
    _, indices = knn(embeddings, embeddings, depth, exclude_self=True, backend=backend,
                     batch_size=batch_size)
    hits = codes[indices.numpy()] == codes[:, None]
    within = np.arange(1, depth + 1)[None, :] <= relevant[:, None]
    hits_within = hits & within
    r = np.maximum(relevant, 1)
    precision_at_i = np.cumsum(hits_within, axis=1) / np.arange(1, depth + 1)[None, :]
    average_precision = (precision_at_i * hits_within).sum(axis=1) / r
    r_precision = hits_within.sum(axis=1) / r
    no_match = relevant == 0
    frame = pd.DataFrame({"label": labels, "r": relevant,
                          "precision_at_1": hits[:, 0].astype(float),
                          "r_precision": r_precision,
                          "mean_average_precision_at_r": average_precision})
    frame.loc[no_match, list(RETRIEVAL_METRICS)] = np.nan
    return frame


def per_class_table(figures: pd.DataFrame, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Per class: images and the mean of each figure over its queries, worst R-Precision
    first (the classes that retrieve worst).

    Args:
        figures: From :func:`per_query_figures`.
        classes: Class names for the labels, when ``figures`` holds class indices.
    """
    table = figures.groupby("label", sort=True).agg(
        images=("r", "size"), **{name: (name, "mean") for name in RETRIEVAL_METRICS})
    table = table.reset_index()
    if classes is not None:
        table["label"] = [classes[int(i)] for i in table["label"]]
    return table.sort_values(["r_precision", "label"], ignore_index=True)
