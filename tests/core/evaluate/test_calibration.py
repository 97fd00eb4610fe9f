"""Tests of visrec.core.evaluate.calibration on hand-made predictions with known answers."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from visrec.core.evaluate import (
    ECE_BINS,
    brier_score,
    calibration_metrics,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_table,
    softmax,
)
from visrec.core.evaluate.calibration import MAX_TEMPERATURE


def _predictions(groups: list[tuple[list[float], int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels from ``(probability row, images, correct)`` groups.

    Every row's top class is class 0; a correct image is labelled 0, a wrong one 1.
    """
    rows, labels = [], []
    for probability, images, correct in groups:
        assert int(np.argmax(probability)) == 0
        rows += [probability] * images
        labels += [0] * correct + [1] * (images - correct)
    return np.array(rows, dtype=np.float64), np.array(labels)


def _sample_labels(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One label per row drawn from that row's class probabilities."""
    cumulative = probabilities.cumsum(axis=1)
    draws = rng.random(len(probabilities))[:, None] * cumulative[:, -1:]
    return (draws < cumulative).argmax(axis=1)


# --- softmax ---------------------------------------------------------------------------


def test_softmax_with_temperature_by_hand():
    logits = np.array([[2.0, 0.0, 0.0], [1000.0, 1000.0, 0.0]])  # the second would overflow
    expected = np.array([[np.e**2, 1, 1], [1, 1, 0]]) / np.array([[np.e**2 + 2], [2]])
    np.testing.assert_allclose(softmax(logits), expected, rtol=1e-12)
    # T = 2 halves the logits: e^1 against e^0.
    np.testing.assert_allclose(softmax(logits[:1], 2.0), [[np.e / (np.e + 2), 1 / (np.e + 2),
                                                           1 / (np.e + 2)]], rtol=1e-12)
    assert softmax(logits).dtype == np.float64


# --- reliability table and ECE -----------------------------------------------------------


def test_perfectly_calibrated_toy_has_zero_ece():
    # In every bin the accuracy equals the confidence exactly: 2 of 5 right at 0.4, 2 of 4
    # at 0.5, 4 of 5 at 0.8 (a bin edge: 12/15), all 3 at 1.0.
    probabilities, labels = _predictions([([0.4, 0.3, 0.3], 5, 2),
                                          ([0.5, 0.25, 0.25], 4, 2),
                                          ([0.8, 0.1, 0.1], 5, 4),
                                          ([1.0, 0.0, 0.0], 3, 3)])
    table = reliability_table(probabilities, labels)
    assert (table["images"] > 0).sum() == 4  # several bins, not one
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.0, abs=1e-12)
    filled = table[table["images"] > 0]
    np.testing.assert_allclose(filled["gap"], 0.0, atol=1e-12)


def test_hand_computed_ece_and_reliability_table():
    # 4 images at confidence 0.9, 2 right: accuracy 1/2, gap -0.4, weight 4/10.
    # 6 images at confidence 0.6, 5 right: accuracy 5/6, gap +7/30, weight 6/10.
    # ECE = 0.4 * 0.4 + 0.6 * 7/30 = 0.16 + 0.14 = 0.30.
    probabilities, labels = _predictions([([0.9, 0.05, 0.05], 4, 2),
                                          ([0.6, 0.2, 0.2], 6, 5)])
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.30, abs=1e-12)
    table = reliability_table(probabilities, labels)
    assert len(table) == ECE_BINS
    assert list(table.columns) == ["bin", "lower", "upper", "images", "confidence",
                                   "accuracy", "gap"]
    # 0.9 * 15 = 13.5: bin 13, (13/15, 14/15]; 0.6 = 9/15 is an upper edge: bin 8, (8/15, 9/15].
    assert table.loc[13, "images"] == 4 and table.loc[8, "images"] == 6
    assert table["images"].sum() == 10
    assert table.loc[13, ["confidence", "accuracy", "gap"]].tolist() == pytest.approx(
        [0.9, 0.5, -0.4])
    assert table.loc[8, ["confidence", "accuracy", "gap"]].tolist() == pytest.approx(
        [0.6, 5 / 6, 7 / 30])
    empty = table[table["images"] == 0]
    assert empty[["confidence", "accuracy", "gap"]].isna().all().all()
    np.testing.assert_allclose(table["lower"], np.arange(15) / 15)
    np.testing.assert_allclose(table["upper"], np.arange(1, 16) / 15)
    # One bin: |overall accuracy - mean confidence| = |7/10 - 0.72| = 0.02.
    assert expected_calibration_error(probabilities, labels, bins=1) == pytest.approx(0.02)


def test_confidence_on_a_bin_edge_goes_to_the_lower_bin():
    # Bins are (lo, hi]: with 15 bins 0.8 = 12/15 closes bin 11; just above opens bin 12.
    just_above = np.nextafter(0.8, 1.0)
    probabilities = np.array([[0.8, 0.1, 0.1], [just_above, 0.1, 1 - just_above - 0.1]])
    table = reliability_table(probabilities, np.array([0, 0]))
    assert table.loc[11, "images"] == 1 and table.loc[12, "images"] == 1
    assert table.loc[11, "upper"] == 0.8
    # With 4 bins the edges 0.25, 0.5 are exact: 0.25 -> bin 0, 0.5 -> bin 1.
    quarter = np.array([[0.25] * 4, [0.5, 0.5 / 3, 0.5 / 3, 0.5 / 3]])
    table = reliability_table(quarter, np.array([0, 1]), bins=4)
    assert table["images"].tolist() == [1, 1, 0, 0]
    assert table["accuracy"].tolist()[:2] == [1.0, 0.0]


def test_confidence_of_one_goes_to_the_last_bin():
    probabilities = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    labels = np.array([0, 1, 1])  # two right, one wrong, all at confidence 1
    for bins in (15, 10, 4, 1):
        table = reliability_table(probabilities, labels, bins=bins)
        assert len(table) == bins
        assert table["images"].tolist() == [0] * (bins - 1) + [3]
        assert table["accuracy"].iloc[-1] == pytest.approx(2 / 3)
        # |2/3 - 1| with all the weight in one bin.
        assert expected_calibration_error(probabilities, labels, bins) == pytest.approx(1 / 3)


def test_bins_parameter_changes_the_binning():
    # Confidences 0.4 (right) and 0.95 (wrong): in one bin the gaps partly cancel.
    probabilities = np.array([[0.4, 0.3, 0.3], [0.95, 0.03, 0.02]])
    labels = np.array([0, 1])
    # 1 bin: accuracy 1/2, confidence 0.675 -> 0.175. 2 bins: (0.6 + 0.95) / 2 = 0.775.
    assert expected_calibration_error(probabilities, labels, bins=1) == pytest.approx(0.175)
    assert expected_calibration_error(probabilities, labels, bins=2) == pytest.approx(0.775)


def test_labels_sampled_from_the_probabilities_are_calibrated():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(10), size=200_000)
    labels = _sample_labels(probabilities, rng)
    assert expected_calibration_error(probabilities, labels) < 0.01
    sharpened = softmax(np.log(probabilities) * 3)  # same arg max, overconfident
    assert (sharpened.argmax(axis=1) == probabilities.argmax(axis=1)).all()
    assert expected_calibration_error(sharpened, labels) > 0.05


# --- NLL and Brier ------------------------------------------------------------------------


def test_nll_and_brier_by_hand():
    probabilities = np.array([[0.7, 0.2, 0.1],
                              [0.1, 0.6, 0.3],
                              [0.25, 0.25, 0.5]])
    labels = np.array([0, 2, 2])
    # NLL: -(log 0.7 + log 0.3 + log 0.5) / 3.
    expected_nll = -(np.log(0.7) + np.log(0.3) + np.log(0.5)) / 3
    # Brier: (0.3² + 0.2² + 0.1²) = 0.14; (0.1² + 0.6² + 0.7²) = 0.86;
    # (0.25² + 0.25² + 0.5²) = 0.375; mean = 1.375 / 3.
    assert negative_log_likelihood(probabilities, labels) == pytest.approx(expected_nll,
                                                                           rel=1e-12)
    assert brier_score(probabilities, labels) == pytest.approx(1.375 / 3, rel=1e-12)
    metrics = calibration_metrics(probabilities, labels)
    assert set(metrics) == {"ece", "nll", "brier"}
    assert metrics["nll"] == pytest.approx(expected_nll, rel=1e-12)
    assert metrics["brier"] == pytest.approx(1.375 / 3, rel=1e-12)
    # ECE: 0.7 right (gap 0.3), 0.6 wrong (gap 0.6), 0.5 right (gap 0.5), each in its own bin.
    assert metrics["ece"] == pytest.approx((0.3 + 0.6 + 0.5) / 3)
    assert all(isinstance(v, float) for v in metrics.values())


def test_brier_of_one_hot_predictions_is_zero_right_and_two_wrong():
    one_hot = np.eye(4)[[0, 3, 1]]
    assert brier_score(one_hot, np.array([0, 3, 1])) == 0.0
    assert brier_score(one_hot, np.array([1, 0, 2])) == 2.0


def test_nll_is_finite_for_a_zero_probability():
    probabilities = np.array([[1.0, 0.0]])
    assert negative_log_likelihood(probabilities, np.array([1])) == pytest.approx(
        -np.log(1e-12))
    assert negative_log_likelihood(probabilities, np.array([0])) == 0.0


# --- temperature scaling -----------------------------------------------------------------


def _synthetic(seed: int, n: int = 20_000, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """True logits z and labels sampled from softmax(z): calibrated at T = 1."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 3
    return z, _sample_labels(softmax(z), rng)


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.0, 4.0])
def test_fit_temperature_recovers_a_known_temperature(true_temperature):
    z, labels = _synthetic(seed=1)
    fitted = fit_temperature(z * true_temperature, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.05)
    # Dividing by T changes no prediction.
    logits = z * true_temperature
    assert (softmax(logits, fitted).argmax(axis=1) == logits.argmax(axis=1)).all()


def test_fitted_temperature_lowers_held_out_nll_of_overconfident_logits():
    z, labels = _synthetic(seed=2)
    logits = z * 3  # three times too confident
    half = len(labels) // 2
    temperature = fit_temperature(logits[:half], labels[:half])
    assert temperature > 1.5
    held_out = (logits[half:], labels[half:])
    before = negative_log_likelihood(softmax(held_out[0]), held_out[1])
    after = negative_log_likelihood(softmax(held_out[0], temperature), held_out[1])
    assert after < before - 0.1
    assert (softmax(held_out[0], temperature).argmax(axis=1)
            == held_out[0].argmax(axis=1)).all()


def test_fit_temperature_without_images_is_one():
    assert fit_temperature(np.zeros((0, 5)), np.zeros(0, dtype=np.int64)) == 1.0


@pytest.mark.parametrize("margin", [5.0, 50.0])
def test_fit_temperature_leaves_t_at_one_when_all_validation_images_are_right(caplog, margin):
    # Every image right: the NLL falls towards 0 as T -> 0 with no finite optimum, and a
    # near-zero T would make every test mistake look certain: T stays 1, with a warning.
    logits = np.zeros((50, 3))
    logits[:, 0] = margin
    labels = np.zeros(50, dtype=np.int64)
    with caplog.at_level(logging.WARNING, logger="visrec.core.evaluate.calibration"):
        temperature = fit_temperature(logits, labels)
    assert temperature == 1.0
    assert "no finite minimum" in caplog.text


def test_fit_temperature_moves_from_one_when_the_gradient_there_is_tiny():
    # 99 images right by a margin of 20, one wrong by 20: at T = 1 the NLL gradient is
    # about 0.2 (the one mistake) but L-BFGS's default tolerances stopped on similar cases.
    logits = np.zeros((100, 2))
    logits[:, 0] = 20.0
    labels = np.zeros(100, dtype=np.int64)
    labels[0] = 1
    temperature = fit_temperature(logits, labels)
    best = min(np.linspace(0.5, 20, 4000), key=lambda t: negative_log_likelihood(
        softmax(logits, t), labels))
    assert temperature == pytest.approx(best, rel=0.01)
    assert temperature > 2


def test_fit_temperature_clips_when_all_validation_images_are_wrong(caplog):
    # Every image wrong by a margin of 50: the NLL falls towards log K as T -> infinity.
    logits = np.zeros((50, 3))
    logits[:, 0] = 50.0
    labels = np.ones(50, dtype=np.int64)
    with caplog.at_level(logging.WARNING, logger="visrec.core.evaluate.calibration"):
        temperature = fit_temperature(logits, labels)
    assert temperature == MAX_TEMPERATURE
    assert "clipped" in caplog.text
    assert (softmax(logits, temperature).argmax(axis=1) == 0).all()
