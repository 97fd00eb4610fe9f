"""Classification metrics over predicted probabilities (scikit-learn underneath)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

TOP_K = 5
SHOT_GROUPS = ("many", "medium", "few")  # reported in this order


def balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Mean recall over the classes present in ``labels``.

    A prediction of a class absent from ``labels`` (a class with no test or val image)
    is an error of the true class; scikit-learn's warning about it is silenced, since the
    pipeline names such classes once, in plain words.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(labels, predicted))


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Headline metrics of one weight set.

    Args:
        labels: True class index per image, shape (N,).
        probabilities: Predicted class probabilities (or scores), shape (N, K).

    Returns:
        top1, top5 (only with more than 5 classes), balanced_accuracy, macro_f1 and
        weighted_f1 (over the classes present in ``labels`` or predicted; weighted by
        support) and num_test_images.
    """
    num_classes = probabilities.shape[1]
    predicted = probabilities.argmax(axis=1)
    metrics = {"top1": float(accuracy_score(labels, predicted))}
    if num_classes > TOP_K:
        metrics["top5"] = float(top_k_accuracy_score(labels, probabilities, k=TOP_K,
                                                     labels=np.arange(num_classes)))
    metrics["balanced_accuracy"] = balanced_accuracy(labels, predicted)
    # Classes absent from both the test labels and the predictions (a class too small to
    # carve a test image from) would count as F1 = 0; like balanced accuracy, skip them.
    present = np.union1d(labels, predicted)
    metrics["macro_f1"] = float(f1_score(labels, predicted, average="macro", labels=present,
                                         zero_division=0))
    metrics["weighted_f1"] = float(f1_score(labels, predicted, average="weighted",
                                            labels=present, zero_division=0))
    metrics["num_test_images"] = len(labels)
    return metrics


def per_class_report(labels: np.ndarray, predicted: np.ndarray,
                     classes: list[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support of every class (a class absent from ``labels`` gets 0)."""
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=np.arange(len(classes)), zero_division=0)
    return pd.DataFrame({"class_index": np.arange(len(classes)), "label": classes,
                         "precision": precision, "recall": recall, "f1": f1,
                         "support": support.astype(int)})


def confusion(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion counts: rows are true classes, columns predicted classes."""
    return confusion_matrix(labels, predicted, labels=np.arange(num_classes))


def group_accuracies(labels: np.ndarray, predicted: np.ndarray,
                     class_groups: list[str]) -> dict[str, float]:
    """Accuracy of each many/medium/few-shot group: the mean recall of its classes.

    Classes without a test image are left out; a group with none of its classes in
    ``labels`` gets no entry. On a balanced test set this is the group's top-1 accuracy
    (Liu et al. 2019).

    Args:
        labels: True class index per image.
        predicted: Predicted class index per image.
        class_groups: Group name of each class, in class-index order.
    """
    groups = np.asarray(class_groups, dtype=object)
    support = np.bincount(labels, minlength=len(groups))
    hits = np.bincount(labels[predicted == labels], minlength=len(groups))
    recall = hits / np.maximum(support, 1)
    known = [g for g in SHOT_GROUPS if g in class_groups]
    result = {}
    for group in known + sorted(set(class_groups) - set(known)):
        chosen = (groups == group) & (support > 0)
        if chosen.any():
            result[f"{group}_shot_accuracy"] = float(recall[chosen].mean())
    return result


def confused_pairs(counts: np.ndarray, classes: list[str], top: int) -> pd.DataFrame:
    """The ``top`` most frequent mistakes: (true, predicted) pairs off the diagonal.

    Args:
        counts: Confusion counts, rows true classes, columns predicted classes.
        classes: Class names in class-index order.
        top: How many pairs to return (fewer when fewer pairs were ever confused).

    Returns:
        Columns ``true``, ``predicted``, ``images`` (the count) and ``rate`` (the share of
        the true class's test images that went to ``predicted``), most frequent first; ties
        in count go to the higher rate, then to class order.
    """
    off = counts.astype(np.int64).copy()
    np.fill_diagonal(off, 0)
    rows, columns = np.nonzero(off)
    support = counts.sum(axis=1)
    table = pd.DataFrame({"true": np.asarray(classes, dtype=object)[rows],
                          "predicted": np.asarray(classes, dtype=object)[columns],
                          "images": off[rows, columns],
                          "rate": off[rows, columns] / np.maximum(support[rows], 1),
                          "_order": np.arange(len(rows))})
    table = table.sort_values(["images", "rate", "_order"], ascending=[False, False, True])
    return table.drop(columns="_order").head(top).reset_index(drop=True)
