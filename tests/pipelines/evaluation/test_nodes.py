"""Unit tests of the evaluation nodes."""

import pandas as pd
import pytest

from visrec.params import EvaluationParams
from visrec.pipelines.evaluation.nodes import evaluate_models


def test_no_test_images_is_a_clear_error():
    manifest = pd.DataFrame({"path": ["a.png"], "label": ["a"], "class_index": [0],
                             "split": ["train"], "width": [8], "height": [8], "bytes": [1]})
    with pytest.raises(ValueError, match=r"ingestion\.test_fraction"):
        evaluate_models({}, manifest, {"classes": ["a", "b"], "root": "."}, EvaluationParams())
