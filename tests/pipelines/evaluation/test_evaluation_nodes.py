"""Unit tests of the evaluation nodes."""

import logging

import numpy as np
import pandas as pd
import pytest

from tests.params import base_params
from tests.pipelines.helpers import make_report
from tests.pipelines.served import served_artifact
from visrec.params import EvaluationParams
from visrec.pipelines.evaluation.nodes import fit_temperatures, score_splits

REPORT = make_report(".", ["a", "b"])


def _params(**overrides: object) -> EvaluationParams:
    """The ``evaluation`` block of conf/base, without test-time flips, with ``overrides``."""
    return base_params(EvaluationParams, **({"tta": "none"} | overrides))


def _manifest(split: str) -> pd.DataFrame:
    return pd.DataFrame({"path": ["a.png"], "label": ["a"], "class_index": [0],
                         "split": [split], "width": [8], "height": [8], "bytes": [1]})


def test_no_test_images_is_a_clear_error():
    with pytest.raises(ValueError, match=r"ingestion\.test_fraction"):
        score_splits({"final": served_artifact()}, _manifest("train"), REPORT, _params())


def test_no_trained_weights_is_a_clear_error():
    with pytest.raises(ValueError, match="run the training pipeline first"):
        score_splits({}, _manifest("test"), REPORT, _params())


def test_temperature_is_one_without_validation_split_or_when_off(caplog):
    rng = np.random.default_rng(0)
    logits = {"final": {"test": rng.normal(size=(4, 2))}}
    with caplog.at_level(logging.WARNING):
        assert fit_temperatures(logits, _manifest("test"), _params()) == {"final": 1.0}
    assert "no validation split to fit the temperature on" in caplog.text
    manifest = pd.concat([_manifest("val")] * 3, ignore_index=True).assign(
        class_index=[0, 1, 0])
    val = {"final": {"val": np.array([[5.0, 0.0], [4.0, 0.0], [6.0, 0.0]])}}
    assert fit_temperatures(val, manifest, _params(temperature_scaling=False)) == {
        "final": 1.0}
    fitted = fit_temperatures(val, manifest, _params())["final"]
    assert fitted > 1.0  # one of three confident predictions is wrong: soften
