"""Tests of visrec.core.metrics on hand-computed examples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from visrec.core.metrics import (
    classification_metrics,
    confusion,
    group_accuracies,
    per_class_report,
)


def _one_hot(predicted: list[int], num_classes: int) -> np.ndarray:
    probabilities = np.full((len(predicted), num_classes), 0.1 / num_classes)
    probabilities[np.arange(len(predicted)), predicted] = 0.9
    return probabilities


def test_imbalanced_toy_top1_differs_from_balanced_accuracy():
    # 8 images of class 0, all right; 2 of class 1, one right.
    labels = np.array([0] * 8 + [1, 1])
    probabilities = _one_hot([0] * 8 + [1, 0], num_classes=2)
    metrics = classification_metrics(labels, probabilities)
    assert set(metrics) == {"top1", "balanced_accuracy", "macro_f1", "num_test_images"}
    assert metrics["top1"] == pytest.approx(0.9)
    assert metrics["balanced_accuracy"] == pytest.approx((8 / 8 + 1 / 2) / 2)  # 0.75
    # F1 of class 0: P = 8/9, R = 1 -> 16/17; class 1: P = 1, R = 1/2 -> 2/3.
    assert metrics["macro_f1"] == pytest.approx((16 / 17 + 2 / 3) / 2)
    assert metrics["num_test_images"] == 10
    assert all(isinstance(metrics[k], float) for k in ("top1", "balanced_accuracy", "macro_f1"))


def test_majority_guesser_scores_chance_balanced_accuracy():
    labels = np.array([0] * 90 + [1] * 5 + [2] * 5)
    metrics = classification_metrics(labels, _one_hot([0] * 100, num_classes=3))
    assert metrics["top1"] == pytest.approx(0.9)
    assert metrics["balanced_accuracy"] == pytest.approx(1 / 3)
    # Only class 0 has an F1: 2 * 0.9 * 1 / 1.9; classes 1, 2 score 0.
    assert metrics["macro_f1"] == pytest.approx((2 * 0.9 / 1.9) / 3)


def _ranked_scores(true_ranks: list[int], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores where image i's true class (class i % K) is ranked ``true_ranks[i]`` (1 = top)."""
    labels, rows = [], []
    for i, rank in enumerate(true_ranks):
        label = i % num_classes
        others = [c for c in range(num_classes) if c != label]
        order = [*others[: rank - 1], label, *others[rank - 1:]]  # best first
        scores = np.empty(num_classes)
        scores[order] = np.linspace(1.0, 0.0, num_classes)
        labels.append(label)
        rows.append(scores / scores.sum())
    return np.array(labels), np.array(rows)


def test_top5_with_more_than_five_classes():
    labels, scores = _ranked_scores([1, 3, 5, 6, 7, 2, 1, 6], num_classes=7)
    metrics = classification_metrics(labels, scores)
    assert metrics["top1"] == pytest.approx(2 / 8)
    assert metrics["top5"] == pytest.approx(5 / 8)  # ranks 1, 3, 5, 2, 1


@pytest.mark.parametrize(("num_classes", "has_top5"), [(2, False), (5, False), (6, True)])
def test_top5_only_beyond_five_classes(num_classes, has_top5):
    labels, scores = _ranked_scores([1] * num_classes, num_classes)
    metrics = classification_metrics(labels, scores)
    assert ("top5" in metrics) is has_top5
    assert metrics["top1"] == 1.0
    if has_top5:
        assert metrics["top5"] == 1.0


def test_per_class_report_values():
    labels = np.array([0, 0, 0, 1, 1])
    predicted = np.array([0, 0, 1, 1, 2])
    report = per_class_report(labels, predicted, ["a", "b", "c"])
    expected = pd.DataFrame({
        "class_index": [0, 1, 2], "label": ["a", "b", "c"],
        "precision": [1.0, 0.5, 0.0],
        "recall": [2 / 3, 0.5, 0.0],
        "f1": [0.8, 0.5, 0.0],
        "support": [3, 2, 0],
    })
    pd.testing.assert_frame_equal(report, expected, check_dtype=False)
    assert pd.api.types.is_integer_dtype(report["support"])


def test_confusion_counts():
    labels = np.array([0, 0, 0, 1, 1, 3])
    predicted = np.array([0, 0, 1, 1, 2, 0])
    matrix = confusion(labels, predicted, num_classes=4)
    np.testing.assert_array_equal(matrix, [[2, 1, 0, 0],
                                           [0, 1, 1, 0],
                                           [0, 0, 0, 0],
                                           [1, 0, 0, 0]])
    assert matrix.sum() == len(labels)
    assert np.trace(matrix) == 3


def test_macro_f1_skips_classes_absent_from_labels_and_predictions():
    """A class too small to have a test image must not count as F1 = 0."""
    labels = np.array([0, 0, 1, 1])
    probabilities = np.eye(3)[[0, 0, 1, 1]]  # perfect on classes 0 and 1; class 2 unseen
    metrics = classification_metrics(labels, probabilities)
    assert metrics["macro_f1"] == pytest.approx(1.0)
    assert metrics["balanced_accuracy"] == pytest.approx(1.0)


def test_group_accuracies_are_mean_recall_of_each_group():
    # Classes 0 (many), 1 and 2 (medium), 3 (few); class 4 (few) has no test image.
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 3, 3])
    predicted = np.array([0, 0, 0, 1, 1, 0, 2, 2, 2, 0, 0])
    groups = ["many", "medium", "medium", "few", "few"]
    result = group_accuracies(labels, predicted, groups)
    assert result == pytest.approx({"many_shot_accuracy": 0.75,
                                    "medium_shot_accuracy": (0.5 + 1.0) / 2,
                                    "few_shot_accuracy": 0.0})
    # Reported many, medium, few, whatever the class order.
    swapped = group_accuracies(labels, predicted, ["few", "medium", "medium", "many", "few"])
    assert list(swapped) == ["many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy"]
    # A group none of whose classes is tested gets no entry.
    assert "few_shot_accuracy" not in group_accuracies(labels[:9], predicted[:9], groups)
