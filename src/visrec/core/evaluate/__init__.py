"""Evaluation: metrics (accuracy, balanced accuracy, shot groups, per class), calibration
(ECE, NLL, Brier, temperature scaling), and the scoring of weight sets on each split."""

from visrec.core.evaluate.calibration import (
    ECE_BINS,
    brier_score,
    calibration_metrics,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_table,
    side_by_side,
    softmax,
)
from visrec.core.evaluate.metrics import (
    SHOT_GROUPS,
    TOP_K,
    balanced_accuracy,
    classification_metrics,
    confused_pairs,
    confusion,
    group_accuracies,
    per_class_report,
)
from visrec.core.evaluate.scoring import (
    SERVE_FALLBACK,
    choose_served,
    comparison_table,
    eval_loader_of,
    metrics_on_test,
    predict_logits,
    split_logits,
    tta_metrics,
    validation_metrics,
)

__all__ = [
    "ECE_BINS", "SERVE_FALLBACK", "SHOT_GROUPS", "TOP_K", "balanced_accuracy", "brier_score",
    "calibration_metrics", "choose_served", "classification_metrics", "comparison_table",
    "confused_pairs", "confusion", "eval_loader_of", "expected_calibration_error",
    "fit_temperature", "group_accuracies", "metrics_on_test", "negative_log_likelihood",
    "per_class_report", "predict_logits", "reliability_table", "side_by_side", "softmax",
    "split_logits", "tta_metrics", "validation_metrics",
]
