"""Unit tests of the evaluation nodes."""

import pandas as pd
import pytest

from visrec.params import EvaluationParams
from visrec.pipelines.evaluation.nodes import evaluate_models

REPORT = {"classes": ["a", "b"], "root": "."}
COUNTS = pd.DataFrame({"label": ["a", "b"], "train": [5, 5], "group": ["few", "few"]})


def _manifest(split: str) -> pd.DataFrame:
    return pd.DataFrame({"path": ["a.png"], "label": ["a"], "class_index": [0],
                         "split": [split], "width": [8], "height": [8], "bytes": [1]})


def test_no_test_images_is_a_clear_error():
    with pytest.raises(ValueError, match=r"ingestion\.test_fraction"):
        evaluate_models({"final": {}}, _manifest("train"), None, REPORT, COUNTS,
                        EvaluationParams())


def test_no_trained_weights_is_a_clear_error():
    with pytest.raises(ValueError, match="run the training pipeline first"):
        evaluate_models({}, _manifest("test"), None, REPORT, COUNTS,
                        EvaluationParams())
