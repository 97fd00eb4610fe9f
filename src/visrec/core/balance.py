"""Class-distribution analysis and the plan that counters imbalance.

Resampling (a sampler over training rows) and loss weighting (class weights of the
criterion) are separate parts of the plan; training applies whichever is set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.utils.class_weight import compute_class_weight

STRATEGIES = ("none", "class_weights", "sampler")


def class_counts(manifest: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Images per class (rows, in class-index order) and split (columns).

    Args:
        manifest: The ingestion manifest.
        classes: Class names in class-index order.

    Returns:
        Integer table with columns ``label``, ``train``, ``val``, ``test``.
    """
    counts = (manifest.groupby(["label", "split"]).size().unstack("split")
              .reindex(index=classes, columns=["train", "val", "test"]).fillna(0).astype(int))
    return counts.rename_axis(columns=None).reset_index()


def imbalance_ratio(train_counts: np.ndarray) -> float:
    """Largest over smallest training class size (classes with no images ignored)."""
    present = train_counts[train_counts > 0]
    return float(present.max() / present.min())


def inverse_frequency_weights(train_counts: np.ndarray) -> np.ndarray:
    """Per-class weights ``N / (K * n_c)`` (scikit-learn's "balanced"): 1 for balanced classes."""
    classes = np.arange(len(train_counts))
    return compute_class_weight("balanced", classes=classes,
                                y=np.repeat(classes, np.asarray(train_counts, dtype=np.int64)))


def make_balance_plan(strategy: str, classes: list[str], train_counts: np.ndarray) -> dict:
    """Decide the remedy for imbalance.

    Args:
        strategy: ``none``; ``class_weights`` (inverse-frequency loss weights); or
            ``sampler`` (class-balanced sampling: each class drawn equally often).
        classes: Class names in class-index order.
        train_counts: Training images per class, same order.

    Returns:
        The plan: strategy, imbalance ratio, ``class_weights`` for the loss (or None)
        and ``sampling_weights`` per class for a weighted sampler (or None). A row's
        sampling weight is the weight of its class.

    Raises:
        ValueError: If ``strategy`` is unknown or a class has no training image.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"class_balance.strategy = {strategy!r}: accepted {list(STRATEGIES)}")
    counts = np.asarray(train_counts)
    empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
    if empty:
        raise ValueError(f"class_balance: classes {empty} have no training images")
    plan = {
        "strategy": strategy,
        "classes": list(classes),
        "train_counts": [int(n) for n in counts],
        "imbalance_ratio": imbalance_ratio(counts),
        "class_weights": None,
        "sampling_weights": None,
    }
    if strategy == "class_weights":
        plan["class_weights"] = inverse_frequency_weights(counts).round(6).tolist()
    elif strategy == "sampler":
        # Probability of a row is 1/n_c, so every class is drawn 1/K of the time.
        plan["sampling_weights"] = (1.0 / counts).round(9).tolist()
    return plan


def sample_weights(plan: dict, class_index: np.ndarray) -> np.ndarray | None:
    """Per-row sampling weights for the training rows, or None when the plan has no sampler."""
    if plan.get("sampling_weights") is None:
        return None
    return np.asarray(plan["sampling_weights"], dtype=np.float64)[class_index]
