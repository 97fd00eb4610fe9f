"""Tests of visrec.core.evaluate.scoring: served choice, validation / test / TTA metrics,
logits of several weight sets per split."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from visrec.core.evaluate import (
    calibration_metrics,
    choose_served,
    comparison_table,
    expected_calibration_error,
    metrics_on_test,
    softmax,
    split_logits,
    tta_metrics,
    validation_metrics,
)
from visrec.core.models import ModelInputs

GROUPS = ["many", "medium", "few"]


def _table(**columns: list) -> pd.DataFrame:
    return pd.DataFrame(columns)


# --- choose_served ------------------------------------------------------------------------


def test_auto_picks_the_best_validation_balanced_accuracy():
    table = _table(weights=["final", "swa", "ema"], val_loss=[0.5, 0.9, 0.4],
                   val_top1=[0.9, 0.8, 0.85], val_balanced_accuracy=[0.70, 0.75, 0.72])
    assert choose_served(table, "auto", "balanced_accuracy") == "swa"
    assert choose_served(table, "auto", "top1") == "final"


def test_auto_ties_go_to_the_lower_validation_loss():
    table = _table(weights=["final", "swa", "ema"], val_loss=[0.6, 0.5, 0.55],
                   val_top1=[0.8, 0.8, 0.8], val_balanced_accuracy=[0.75, 0.75, 0.60])
    assert choose_served(table, "auto", "balanced_accuracy") == "swa"
    # Equal loss too: the table's order decides.
    table["val_loss"] = 0.5
    assert choose_served(table, "auto", "balanced_accuracy") == "final"


def test_loss_metric_picks_the_lowest():
    table = _table(weights=["final", "swa", "ema"], val_loss=[0.6, 0.7, 0.45],
                   val_top1=[0.9, 0.95, 0.8], val_balanced_accuracy=[0.9, 0.95, 0.8])
    assert choose_served(table, "auto", "loss") == "ema"


def test_named_weight_set_is_served_as_asked():
    table = _table(weights=["final", "swa"], val_loss=[0.1, 0.9],
                   val_balanced_accuracy=[0.9, 0.1])
    assert choose_served(table, "swa", "balanced_accuracy") == "swa"


def test_unknown_weight_set_names_the_parameter_and_the_choices():
    table = _table(weights=["final", "swa"], val_loss=[0.1, 0.9],
                   val_balanced_accuracy=[0.9, 0.1])
    with pytest.raises(ValueError, match=r"evaluation\.serve = 'best'") as error:
        choose_served(table, "best", "balanced_accuracy")
    message = str(error.value)
    assert "'auto'" in message and "'final'" in message and "'swa'" in message


@pytest.mark.parametrize(("names", "expected"), [
    (["final", "ema", "swa"], "swa"),
    (["final", "ema"], "ema"),
    (["final"], "final"),
    (["other", "final"], "final"),
    (["other"], "other"),
])
def test_no_validation_falls_back_to_swa_ema_final(caplog, names, expected):
    nan = [math.nan] * len(names)
    table = _table(weights=names, val_loss=nan, val_top1=nan, val_balanced_accuracy=nan)
    with caplog.at_level(logging.WARNING, logger="visrec.core.evaluate.scoring"):
        assert choose_served(table, "auto", "balanced_accuracy") == expected
    assert f"serving '{expected}'" in caplog.text


# --- validation, test and TTA metrics ----------------------------------------------------


def test_validation_metrics_by_hand():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0]], dtype=np.float32)
    labels = np.array([0, 0, 1])
    metrics = validation_metrics(logits, labels)
    # -log softmax of the true class: log(1 + e^-2), log(1 + e^1), log(1 + e^-2).
    expected_loss = (2 * math.log(1 + math.exp(-2)) + math.log(1 + math.e)) / 3
    assert metrics["loss"] == pytest.approx(expected_loss, rel=1e-6)
    assert metrics["top1"] == pytest.approx(2 / 3)
    assert metrics["balanced_accuracy"] == pytest.approx((1 / 2 + 1) / 2)


def test_validation_metrics_without_a_split_are_nan():
    for metrics in (validation_metrics(None, np.zeros(0, dtype=np.int64)),
                    validation_metrics(None, np.array([0, 1])),
                    validation_metrics(np.zeros((0, 3), dtype=np.float32),
                                       np.zeros(0, dtype=np.int64))):
        assert set(metrics) == {"loss", "top1", "balanced_accuracy"}
        assert all(math.isnan(v) for v in metrics.values())


def _test_split(seed: int = 0, n: int = 300, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Overconfident logits and labels: right about 2/3 of the time, class-dependent."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) * 2
    logits[np.arange(n), labels] += 2.5
    return (logits * 3).astype(np.float32), labels


def test_metrics_on_test_keys_and_temperature_effect():
    logits, labels = _test_split()
    plain = metrics_on_test(logits, labels, 1.0, GROUPS, bins=15)
    scaled = metrics_on_test(logits, labels, 3.0, GROUPS, bins=15)
    assert set(plain) == {
        "top1", "balanced_accuracy", "macro_f1", "weighted_f1", "num_test_images",
        "many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy",
        "ece", "nll", "brier", "ece_calibrated", "nll_calibrated", "brier_calibrated",
        "temperature"}
    assert scaled["temperature"] == 3.0
    accuracy = ["top1", "balanced_accuracy", "macro_f1", "weighted_f1", "many_shot_accuracy",
                "medium_shot_accuracy", "few_shot_accuracy", "ece", "nll", "brier"]
    assert {k: scaled[k] for k in accuracy} == {k: plain[k] for k in accuracy}
    assert scaled["top1"] == pytest.approx((logits.argmax(axis=1) == labels).mean())
    # At T = 1 "calibrated" is the raw figure; at T = 3 it is softmax(logits / 3)'s.
    for name in ("ece", "nll", "brier"):
        assert plain[f"{name}_calibrated"] == plain[name]
    assert scaled["ece_calibrated"] != pytest.approx(scaled["ece"], abs=1e-3)
    assert scaled["ece_calibrated"] == pytest.approx(
        expected_calibration_error(softmax(logits, 3.0), labels))
    assert scaled["nll_calibrated"] < scaled["nll"]  # these logits are 3x overconfident


def test_metrics_on_test_bins_reach_the_ece():
    logits, labels = _test_split()
    one_bin = metrics_on_test(logits, labels, 1.0, GROUPS, bins=1)
    probabilities = softmax(logits)
    expected = abs((probabilities.argmax(axis=1) == labels).mean()
                   - probabilities.max(axis=1).mean())
    assert one_bin["ece"] == pytest.approx(expected)


def test_tta_with_identical_flipped_logits_matches_metrics_on_test():
    logits, labels = _test_split(seed=3, k=7)
    groups = ["many", "many", "medium", "medium", "few", "few", "few"]
    plain = metrics_on_test(logits, labels, 2.0, groups, bins=15)
    tta = tta_metrics(logits, logits.copy(), labels, 2.0, groups, bins=15)
    for name in ("top1", "top5", "balanced_accuracy", "macro_f1", "few_shot_accuracy"):
        assert tta[name] == pytest.approx(plain[name]), name
    for name in ("ece", "nll", "brier"):  # TTA reports calibrated probabilities
        assert tta[name] == pytest.approx(plain[f"{name}_calibrated"]), name


def test_tta_averages_the_calibrated_probabilities():
    # Image 0: unflipped says class 0 weakly, flipped class 1 strongly -> the mean says 1.
    logits = np.array([[1.0, 0.0], [2.0, 0.0]])
    flipped = np.array([[0.0, 3.0], [2.0, 0.0]])
    labels = np.array([1, 0])
    mean = (softmax(logits, 2.0) + softmax(flipped, 2.0)) / 2
    metrics = tta_metrics(logits, flipped, labels, 2.0, ["many", "few"], bins=15)
    assert metrics["top1"] == 1.0  # unflipped alone: 1/2
    assert metrics["nll"] == pytest.approx(calibration_metrics(mean, labels)["nll"])
    assert metrics["nll"] == pytest.approx(-np.log(mean[[0, 1], [1, 0]]).mean())


# --- logits of several weight sets on each split ------------------------------------------


class _ColumnSums(nn.Module):
    """Two 'logits': the sum of the leftmost pixel column, and of the rightmost."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([images[..., 0].sum(dim=(1, 2)), images[..., -1].sum(dim=(1, 2))],
                           dim=1)


class _Doubled(nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return 2 * _ColumnSums()(images)


def test_split_logits_decodes_each_image_once_for_every_weight_set(tmp_path, monkeypatch):
    """Two weight sets, two splits: one decode per image; the mirrored test logits swap
    the left and right column sums of the weight set asked to flip."""
    from PIL import Image

    from visrec.core.data import datasets

    rows = []
    for i, split in enumerate(["val", "test", "test"]):
        pixels = np.zeros((8, 8, 3), dtype=np.uint8)
        pixels[:, 0] = 255  # a bright left column: left sum > right sum
        pixels[:, -1] = 40 * i
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
        rows.append({"path": f"{i}.png", "class_index": 0, "split": split, "cache_index": -1})
    manifest = pd.DataFrame(rows)
    splits = {name: manifest[manifest["split"] == name] for name in ("val", "test")}
    decoded = []
    real_load = datasets.load_image
    monkeypatch.setattr(datasets, "load_image", lambda *a, **k: decoded.append(a[0])
                        or real_load(*a, **k))
    # mean 0, std 1: normalisation leaves the [0, 1] pixels as they are
    inputs = ModelInputs(image_size=8, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                         interpolation="bilinear", in_chans=3)
    logits = split_logits({"a": _ColumnSums(), "b": _Doubled()}, inputs, splits,
                          str(tmp_path), 2, torch.device("cpu"), hflip={"b"})
    assert len(decoded) == 3  # not 6
    assert set(logits["a"]) == {"val", "test"} and set(logits["b"]) == {"val", "test",
                                                                       "test_hflip"}
    assert logits["a"]["val"].shape == (1, 2) and logits["a"]["test"].shape == (2, 2)
    np.testing.assert_allclose(logits["b"]["test"], 2 * logits["a"]["test"])
    np.testing.assert_allclose(logits["b"]["test_hflip"], logits["b"]["test"][:, ::-1])
    assert (logits["a"]["test"][:, 0] > logits["a"]["test"][:, 1]).all()
    # 8 rows x 3 channels of each column, in [0, 1]: the pixels reach the model unchanged
    np.testing.assert_allclose(logits["a"]["val"], [[24.0, 0.0]], atol=1e-5)
    np.testing.assert_allclose(logits["a"]["test"], [[24.0, 24 * 40 / 255],
                                                     [24.0, 24 * 80 / 255]], atol=1e-5)
    # weight sets are grouped by their input config (was input_key): hashable, by value
    assert hash(inputs) == hash(inputs.model_copy())
    assert inputs != inputs.model_copy(update={"image_size": 9})
    assert len({inputs, inputs.model_copy(), inputs.model_copy(update={"image_size": 9})}) == 2


# --- comparison table ---------------------------------------------------------------------


def test_comparison_table_rows_and_served_flag():
    metrics = {"final": {"top1": 0.8, "ece": 0.1, "per_class": {"a": 1.0}, "tta": True},
               "swa": {"top1": 0.85, "ece": 0.05, "per_class": {"a": 0.5}, "tta": False}}
    validation = {"final": {"loss": 0.6, "balanced_accuracy": 0.7},
                  "swa": {"loss": 0.5, "balanced_accuracy": 0.75}}
    table = comparison_table(metrics, validation, served="swa")
    assert table["weights"].tolist() == ["final", "swa"]
    assert table["served"].tolist() == [False, True]
    assert list(table.columns) == ["weights", "served", "val_loss", "val_balanced_accuracy",
                                   "top1", "ece"]  # dicts and flags are left out
    assert table.loc[1, ["val_loss", "top1", "ece"]].tolist() == [0.5, 0.85, 0.05]
    assert choose_served(table, "auto", "balanced_accuracy") == "swa"
    assert not comparison_table(metrics, validation)["served"].any()
