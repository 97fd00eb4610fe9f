"""Tests of visrec.core.evaluate.metrics on hand-computed examples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from visrec.core.evaluate import (
    balanced_accuracy,
    classification_metrics,
    confused_pairs,
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
    assert set(metrics) == {"top1", "balanced_accuracy", "macro_f1", "weighted_f1",
                            "num_test_images"}
    assert metrics["top1"] == pytest.approx(0.9)
    assert metrics["balanced_accuracy"] == pytest.approx((8 / 8 + 1 / 2) / 2)  # 0.75
    # F1 of class 0: P = 8/9, R = 1 -> 16/17; class 1: P = 1, R = 1/2 -> 2/3.
    assert metrics["macro_f1"] == pytest.approx((16 / 17 + 2 / 3) / 2)
    # Weighted by support: 8 images of class 0, 2 of class 1.
    assert metrics["weighted_f1"] == pytest.approx((8 * 16 / 17 + 2 * 2 / 3) / 10)
    assert metrics["num_test_images"] == 10
    assert all(isinstance(metrics[k], float)
               for k in ("top1", "balanced_accuracy", "macro_f1", "weighted_f1"))


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


# Three classes, many / medium / few shot, 6 / 3 / 2 test images:
#   class 0: 5 right, 1 taken for class 1       recall 5/6
#   class 1: 2 right, 1 taken for class 0       recall 2/3
#   class 2: 1 right, 1 taken for class 1       recall 1/2
THREE_LABELS = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2])
THREE_PREDICTED = np.array([0, 0, 0, 0, 0, 1, 1, 1, 0, 2, 1])


def test_hand_computed_three_class_metrics():
    metrics = classification_metrics(THREE_LABELS, np.eye(3)[THREE_PREDICTED])
    assert metrics["top1"] == pytest.approx(8 / 11)  # (5 + 2 + 1) / 11
    # Mean recall: (5/6 + 2/3 + 1/2) / 3 = (5/6 + 4/6 + 3/6) / 3 = 2/3, not 8/11.
    assert metrics["balanced_accuracy"] == pytest.approx(2 / 3)
    assert balanced_accuracy(THREE_LABELS, THREE_PREDICTED) == pytest.approx(2 / 3)
    # Precision: class 0 5/6 (5 of 6 predicted 0), class 1 2/4, class 2 1/1.
    # F1 = 2PR / (P + R): class 0 5/6, class 1 2 (1/2)(2/3) / (7/6) = 4/7, class 2
    # 2 (1)(1/2) / (3/2) = 2/3.
    assert metrics["macro_f1"] == pytest.approx((5 / 6 + 4 / 7 + 2 / 3) / 3)
    # Weighted by support 6, 3, 2: (6 * 5/6 + 3 * 4/7 + 2 * 2/3) / 11 = (5 + 12/7 + 4/3) / 11.
    assert metrics["weighted_f1"] == pytest.approx((5 + 12 / 7 + 4 / 3) / 11)
    assert metrics["macro_f1"] != pytest.approx(metrics["weighted_f1"])
    assert metrics["num_test_images"] == 11


def test_hand_computed_group_accuracies():
    result = group_accuracies(THREE_LABELS, THREE_PREDICTED, ["many", "medium", "few"])
    assert list(result) == ["many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy"]
    assert result == pytest.approx({"many_shot_accuracy": 5 / 6,
                                    "medium_shot_accuracy": 2 / 3,
                                    "few_shot_accuracy": 1 / 2})
    # Classes 0 and 1 both medium: (5/6 + 2/3) / 2 = 3/4, not the pooled 7/9.
    merged = group_accuracies(THREE_LABELS, THREE_PREDICTED, ["medium", "medium", "few"])
    assert merged == pytest.approx({"medium_shot_accuracy": 3 / 4, "few_shot_accuracy": 1 / 2})


def test_group_accuracy_leaves_out_classes_without_test_images():
    # Class 3 (few) has no test image: few = recall of class 2 alone (1/2), not (1/2 + 0) / 2.
    result = group_accuracies(THREE_LABELS, THREE_PREDICTED, ["many", "medium", "few", "few"])
    assert result["few_shot_accuracy"] == pytest.approx(1 / 2)
    # A group whose only class has no test image gets no key; an unknown group comes last.
    result = group_accuracies(THREE_LABELS, THREE_PREDICTED,
                              ["other", "many", "medium", "few"])
    assert result == pytest.approx({"many_shot_accuracy": 2 / 3,
                                    "medium_shot_accuracy": 1 / 2,
                                    "other_shot_accuracy": 5 / 6})
    assert list(result)[-1] == "other_shot_accuracy"
    assert "few_shot_accuracy" not in result


def test_balanced_accuracy_counts_predictions_of_untested_classes_as_errors():
    # Class 2 has no test image; a prediction of it is a mistake of the true class.
    labels = np.array([0, 0, 1, 1])
    predicted = np.array([0, 2, 1, 1])
    assert balanced_accuracy(labels, predicted) == pytest.approx((1 / 2 + 1) / 2)


# Classes a, b, c, d; rows are true classes (support 13, 7, 4, 3).
PAIR_COUNTS = np.array([[10, 2, 0, 1],
                        [2, 5, 0, 0],
                        [0, 3, 1, 0],
                        [1, 0, 2, 0]])


def test_confused_pairs_by_hand():
    pairs = confused_pairs(PAIR_COUNTS, ["a", "b", "c", "d"], top=10)
    assert list(pairs.columns) == ["true", "predicted", "images", "rate"]
    # Count first; among the three 2s the rate: d->c 2/3, b->a 2/7, a->b 2/13; among the 1s
    # d->a 1/3 before a->d 1/13. The diagonal (10, 5, 1) never appears.
    assert list(zip(pairs["true"], pairs["predicted"], strict=True)) == [
        ("c", "b"), ("d", "c"), ("b", "a"), ("a", "b"), ("d", "a"), ("a", "d")]
    assert pairs["images"].tolist() == [3, 2, 2, 2, 1, 1]
    np.testing.assert_allclose(pairs["rate"], [3 / 4, 2 / 3, 2 / 7, 2 / 13, 1 / 3, 1 / 13])
    assert not (pairs["true"] == pairs["predicted"]).any()
    assert pairs.index.tolist() == list(range(6))


def test_confused_pairs_top_limits_the_rows():
    pairs = confused_pairs(PAIR_COUNTS, ["a", "b", "c", "d"], top=2)
    assert list(zip(pairs["true"], pairs["predicted"], strict=True)) == [("c", "b"),
                                                                          ("d", "c")]
    assert pairs.index.tolist() == [0, 1]


def test_confused_pairs_equal_count_and_rate_follow_class_order():
    # Every off-diagonal count 1 of a row support 2: full ties, broken row by row.
    counts = np.array([[1, 0, 1],
                       [1, 1, 0],
                       [0, 1, 1]])
    pairs = confused_pairs(counts, ["x", "y", "z"], top=5)
    assert list(zip(pairs["true"], pairs["predicted"], strict=True)) == [
        ("x", "z"), ("y", "x"), ("z", "y")]
    np.testing.assert_allclose(pairs["rate"], 0.5)


def test_confused_pairs_without_mistakes_is_empty_with_the_columns():
    pairs = confused_pairs(np.diag([4, 0, 3]), ["a", "b", "c"], top=5)
    assert pairs.empty
    assert list(pairs.columns) == ["true", "predicted", "images", "rate"]
