"""The shape of a class distribution: counts, imbalance, effective numbers, shot groups."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import entropy
from sklearn.utils.class_weight import compute_class_weight

GROUPS = ("many", "medium", "few")


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


def normalised_entropy(train_counts: np.ndarray) -> float:
    """Entropy of the class distribution over its maximum ``log K``: 1 is balanced.

    Classes with no image count in ``K`` (they make the distribution less even).
    """
    if len(train_counts) < 2:
        return 1.0
    return float(entropy(np.asarray(train_counts, dtype=np.float64)) / math.log(len(train_counts)))


def effective_numbers(train_counts: np.ndarray, beta: float) -> np.ndarray:
    """Effective number of samples ``(1 - beta^n) / (1 - beta)`` per class (Cui et al. 2019).

    It grows like ``n`` for small ``n`` and saturates at ``1 / (1 - beta)``: more images of
    one class overlap more. ``beta = 0`` gives 1 for every non-empty class.
    """
    counts = np.asarray(train_counts, dtype=np.float64)
    return -np.expm1(counts * math.log(beta)) / (1.0 - beta) if beta > 0 else np.minimum(counts, 1)


def inverse_frequency_weights(train_counts: np.ndarray) -> np.ndarray:
    """Per-class weights ``N / (K * n_c)`` (scikit-learn's "balanced"): 1 for balanced classes."""
    classes = np.arange(len(train_counts))
    return compute_class_weight("balanced", classes=classes,
                                y=np.repeat(classes, np.asarray(train_counts, dtype=np.int64)))


def effective_number_weights(train_counts: np.ndarray, beta: float) -> np.ndarray:
    """Class-balanced weights ``1 / E_n`` scaled to sum to the number of classes (Cui et al.)."""
    inverse = 1.0 / effective_numbers(train_counts, beta)
    return inverse * len(inverse) / inverse.sum()


def shot_groups(train_counts: np.ndarray, many: int, few: int) -> np.ndarray:
    """``many`` (more than ``many`` images), ``few`` (fewer than ``few``) or ``medium``."""
    counts = np.asarray(train_counts)
    return np.where(counts > many, "many", np.where(counts < few, "few", "medium")).astype(object)


def analyse_classes(counts: pd.DataFrame, beta: float, many: int,
                    few: int) -> tuple[pd.DataFrame, dict]:
    """The shape of the class distribution.

    Args:
        counts: Images per class and split (see :func:`class_counts`).
        beta: Effective-number parameter.
        many: Many-shot classes have more than this many training images.
        few: Few-shot classes have fewer than this many training images.

    Returns:
        ``(table, report)``: ``counts`` with ``effective_number`` and ``group`` columns; a
        JSON-friendly report (imbalance ratio, normalised entropy, groups, head and tail
        classes, warnings).
    """
    train = counts["train"].to_numpy()
    table = counts.assign(effective_number=effective_numbers(train, beta).round(4),
                          group=shot_groups(train, many, few))
    labels = table["label"].tolist()
    order = np.argsort(-train, kind="stable")
    report = {
        "num_classes": len(table),
        "train_images": int(train.sum()),
        "imbalance_ratio": imbalance_ratio(train),
        "normalised_entropy": round(normalised_entropy(train), 6),
        "beta": beta,
        "thresholds": {"many": many, "few": few},
        "head": {"label": labels[order[0]], "train": int(train[order[0]])},
        "tail": {"label": labels[order[-1]], "train": int(train[order[-1]])},
        "groups": {g: table.loc[table["group"] == g, "label"].tolist() for g in GROUPS},
        "group_train_images": {g: int(train[table["group"] == g].sum()) for g in GROUPS},
        "warnings": distribution_warnings(table),
    }
    return table, report


def distribution_warnings(counts: pd.DataFrame, shown: int = 10) -> list[str]:
    """What the user should know before training: classes too small to learn or to measure."""
    warnings = []
    single = counts.loc[counts["train"] == 1, "label"].tolist()
    if single:
        warnings.append(f"classes {class_list(single, shown)} have a single training image: they "
                        "are learnt from one example; add images or expect low recall")
    has_split = {s: counts[s].sum() > 0 for s in ("val", "test")}
    for split, present in has_split.items():
        missing = counts.loc[counts[split] == 0, "label"].tolist()
        if present and missing:
            warnings.append(f"classes {class_list(missing, shown)} have no {split} image: their "
                            f"{split} accuracy is not measured and they are left out of "
                            f"balanced accuracy on {split}")
    return warnings


def class_list(labels: list[str], shown: int = 10) -> str:
    """Class names for a message: the first ``shown`` of them, then how many more."""
    more = f" and {len(labels) - shown} more" if len(labels) > shown else ""
    return f"{labels[:shown]}{more}"
