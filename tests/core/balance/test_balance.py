"""Tests of visrec.core.balance: the class-distribution analysis and the balance plan."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from tests.params import base_params
from visrec.core.balance import (
    AUTO_REMEDY,
    BALANCE_STRATEGIES,
    BalancePlan,
    analyse_classes,
    class_counts,
    effective_number_weights,
    effective_numbers,
    imbalance_ratio,
    inverse_frequency_weights,
    make_balance_plan,
    normalised_entropy,
    shot_groups,
)
from visrec.core.data import SamplerPlan
from visrec.core.data.samplers import class_probabilities, resample_targets
from visrec.params import ClassBalanceParams


def _manifest(counts: dict[tuple[str, str], int]) -> pd.DataFrame:
    rows = [(f"{split}/{label}/{i}.png", label, split)
            for (label, split), n in counts.items() for i in range(n)]
    return pd.DataFrame(rows, columns=["path", "label", "split"])


def _counts(train: list[int], test: list[int] | None = None,
            val: list[int] | None = None) -> pd.DataFrame:
    labels = [f"c{i}" for i in range(len(train))]
    zeros = [0] * len(train)
    return pd.DataFrame({"label": labels, "train": train, "val": val or zeros,
                         "test": test or [5] * len(train)})


def test_class_counts_table():
    manifest = _manifest({("cat", "train"): 5, ("cat", "val"): 1, ("cat", "test"): 2,
                          ("dog", "train"): 3, ("dog", "test"): 4})
    table = class_counts(manifest, ["dog", "cat", "eel"])
    expected = pd.DataFrame({"label": ["dog", "cat", "eel"], "train": [3, 5, 0],
                             "val": [0, 1, 0], "test": [4, 2, 0]})
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)
    for column in ("train", "val", "test"):
        assert pd.api.types.is_integer_dtype(table[column]), column


@pytest.mark.parametrize(("counts", "expected"), [
    ([100, 10], 10.0), ([7, 7, 7], 1.0), ([0, 5, 20], 4.0), ([150, 15, 30], 10.0)])
def test_imbalance_ratio(counts, expected):
    assert imbalance_ratio(np.array(counts)) == pytest.approx(expected)


def test_normalised_entropy():
    assert normalised_entropy(np.array([10, 10, 10, 10])) == pytest.approx(1.0)
    p = np.array([0.9, 0.1])
    assert normalised_entropy(np.array([90, 10])) == pytest.approx(
        -(p * np.log(p)).sum() / math.log(2))
    # An empty class counts in K: the distribution is less even than over the present ones.
    assert normalised_entropy(np.array([10, 10, 0])) == pytest.approx(math.log(2) / math.log(3))
    assert normalised_entropy(np.array([5])) == 1.0


def test_effective_numbers_follow_cui_et_al():
    beta = 0.99
    counts = np.array([1, 10, 100, 10_000])
    expected = [(1 - beta**n) / (1 - beta) for n in counts]
    np.testing.assert_allclose(effective_numbers(counts, beta), expected)
    assert effective_numbers(np.array([1]), beta)[0] == pytest.approx(1.0)
    # It saturates at 1 / (1 - beta), and beta = 0 counts every class once.
    assert effective_numbers(np.array([10**6]), beta)[0] == pytest.approx(100.0)
    np.testing.assert_allclose(effective_numbers(counts, 0.0), [1, 1, 1, 1])


def test_effective_number_weights_sum_to_k_and_approach_inverse_frequency():
    counts = np.array([500, 50, 5])
    weights = effective_number_weights(counts, 0.999)
    assert weights.sum() == pytest.approx(3.0)
    inverse = 1 / effective_numbers(counts, 0.999)
    np.testing.assert_allclose(weights, inverse * 3 / inverse.sum())
    # beta -> 1: weights proportional to 1 / n; beta = 0: all equal.
    near_inverse = effective_number_weights(counts, 1 - 1e-9)
    np.testing.assert_allclose(near_inverse / near_inverse[0], [1, 10, 100], rtol=1e-4)
    np.testing.assert_allclose(effective_number_weights(counts, 0.0), [1, 1, 1])


def test_inverse_frequency_weights_numbers():
    np.testing.assert_allclose(inverse_frequency_weights(np.array([100, 10])), [0.55, 5.5])
    np.testing.assert_allclose(inverse_frequency_weights(np.array([60, 30, 10])),
                               [100 / 180, 100 / 90, 100 / 30])


def test_shot_groups_thresholds_are_strict():
    groups = shot_groups(np.array([101, 100, 20, 19, 1]), many=100, few=20)
    assert groups.tolist() == ["many", "medium", "medium", "few", "few"]


def test_analysis_report_and_table():
    counts = _counts([150, 60, 19, 1], test=[5, 5, 5, 0], val=[2, 2, 1, 0])
    table, report = analyse_classes(counts, beta=0.9, many=100, few=20)
    assert table["group"].tolist() == ["many", "medium", "few", "few"]
    np.testing.assert_allclose(table["effective_number"],
                               [round((1 - 0.9**n) / 0.1, 4) for n in (150, 60, 19, 1)])
    assert report["imbalance_ratio"] == 150.0
    assert report["train_images"] == 230
    assert report["groups"] == {"many": ["c0"], "medium": ["c1"], "few": ["c2", "c3"]}
    assert report["group_train_images"] == {"many": 150, "medium": 60, "few": 20}
    assert report["head"] == {"label": "c0", "train": 150}
    assert report["tail"] == {"label": "c3", "train": 1}
    assert report["normalised_entropy"] == pytest.approx(
        normalised_entropy(np.array([150, 60, 19, 1])), abs=1e-6)
    warnings = " ".join(report["warnings"])
    assert "['c3'] have a single training image" in warnings
    assert "['c3'] have no test image" in warnings
    assert "['c3'] have no val image" in warnings
    assert json.loads(json.dumps(report)) == report


def test_no_warnings_for_a_healthy_distribution():
    _, report = analyse_classes(_counts([50, 40], val=[3, 3]), 0.999, 100, 20)
    assert report["warnings"] == []
    # No val split at all is not a per-class problem.
    _, report = analyse_classes(_counts([50, 40]), 0.999, 100, 20)
    assert report["warnings"] == []


def _plan(train: list[int], **params) -> BalancePlan:
    settings = base_params(ClassBalanceParams, **params).settings()
    return make_balance_plan(_counts(train), settings)


def test_plan_none_changes_nothing():
    plan = _plan([100, 10], strategy="none")
    assert plan.strategy == "none"
    assert plan.components == ()
    assert plan.sampler is None and plan.class_weights is None and plan.crt is None
    assert plan.loss.name is None and plan.loss.options == {}
    assert plan.loss.logit_adjustment_tau is None
    np.testing.assert_allclose(plan.loss.log_prior, np.log([100 / 110, 10 / 110]))


@pytest.mark.parametrize(("strategy", "q"), [("sqrt_sampler", 0.5),
                                             ("class_balanced_sampler", 0.0)])
def test_plan_weighted_samplers(strategy, q):
    plan = _plan([400, 100, 25], strategy=strategy)
    assert plan.sampler.kind == strategy
    assert plan.sampler.q == q
    expected = {0.5: [20 / 35, 10 / 35, 5 / 35], 0.0: [1 / 3, 1 / 3, 1 / 3]}[q]
    np.testing.assert_allclose(plan.sampler.class_probabilities, expected, atol=1e-8)
    assert plan.class_weights is None


def test_class_probabilities_power():
    np.testing.assert_allclose(class_probabilities(np.array([9, 1]), 1.0), [0.9, 0.1])
    np.testing.assert_allclose(class_probabilities(np.array([9, 1]), 0.5), [0.75, 0.25])


@pytest.mark.parametrize(("kind", "ratio", "expected"), [
    ("oversample", 1.0, [100, 100, 100]),
    ("oversample", 0.5, [100, 50, 50]),
    ("oversample", 0.3, [100, 40, 30]),
    ("undersample", 1.0, [8, 8, 8]),
    ("undersample", 0.25, [32, 32, 8]),
    ("undersample", 0.1, [80, 40, 8]),
])
def test_resample_targets(kind, ratio, expected):
    targets = resample_targets(np.array([100, 40, 8]), kind, ratio)
    assert targets.tolist() == expected


def test_plan_resampling():
    plan = _plan([100, 40, 8], strategy="undersample", resample={"ratio": 0.25})
    assert plan.sampler == SamplerPlan(kind="undersample", ratio=0.25, class_targets=(32, 32, 8))
    plan = _plan([100, 40, 8], strategy="oversample")
    assert plan.sampler.class_targets == (100, 100, 100)


@pytest.mark.parametrize("kind", ["inverse_frequency", "effective_number"])
def test_plan_class_weights_and_drw(kind):
    train = [100, 10]
    plan = _plan(train, strategy="class_weights", class_weights=kind, beta=0.99)
    expected = (inverse_frequency_weights(np.array(train)) if kind == "inverse_frequency"
                else effective_number_weights(np.array(train), 0.99))
    np.testing.assert_allclose(plan.class_weights.values, expected, atol=1e-6)
    assert plan.class_weights.start_fraction == 0.0
    drw = _plan(train, strategy="drw", class_weights=kind, beta=0.99,
                drw={"start_fraction": 0.6})
    assert drw.class_weights.values == plan.class_weights.values
    assert drw.class_weights.start_fraction == 0.6


def test_plan_losses_and_crt():
    plan = _plan([30, 3], strategy="focal", focal={"gamma": 1.5})
    assert (plan.loss.name, plan.loss.options) == ("focal", {"gamma": 1.5})
    assert plan.loss.logit_adjustment_tau is None
    plan = _plan([30, 3], strategy="logit_adjustment", logit_adjustment={"tau": 0.5})
    assert plan.loss.logit_adjustment_tau == 0.5
    assert plan.loss.name is None and plan.loss.options == {}
    plan = _plan([30, 3], strategy="crt", crt={"epochs": 4, "lr": 0.1})
    assert plan.crt.epochs == 4 and plan.crt.lr == 0.1
    np.testing.assert_allclose(plan.crt.sampler.class_probabilities, [0.5, 0.5])
    assert plan.sampler is None  # the re-training samples evenly, the training does not


def test_plan_combines_one_part_of_each_kind():
    plan = _plan([300, 30, 3], strategy=["class_balanced_sampler", "focal", "drw"])
    assert plan.strategy == "class_balanced_sampler+focal+drw"
    assert plan.sampler.kind == "class_balanced_sampler"
    assert (plan.loss.name, plan.loss.options) == ("focal", {"gamma": 2.0})
    assert plan.class_weights.start_fraction == 0.8


def test_auto_small_imbalance_applies_nothing_and_says_why():
    plan = _plan([30, 20, 12], strategy="auto")
    assert plan.components == () and plan.strategy == "none"
    assert "2.5 is below class_balance.auto.min_imbalance_ratio = 3" in plan.reason
    assert plan.requested == ("auto",)


def test_auto_large_imbalance_applies_the_strong_default():
    plan = _plan([300, 30, 3], strategy="auto")
    assert plan.components == AUTO_REMEDY
    assert "100.0 >= class_balance.auto.min_imbalance_ratio = 3" in plan.reason
    assert plan.loss.logit_adjustment_tau == 1.0
    assert plan.crt is not None
    assert _plan([300, 30, 3], strategy="auto",
                 auto={"min_imbalance_ratio": 200}).components == ()


@pytest.mark.parametrize("strategy", BALANCE_STRATEGIES)
def test_every_plan_is_json_friendly(strategy):
    plan = _plan([30, 3, 1], strategy=strategy)
    data = plan.to_json()
    assert json.loads(json.dumps(data)) == data
    assert BalancePlan.from_json(json.loads(json.dumps(data))) == plan


def test_single_image_class_gets_finite_numbers():
    for strategy in ("oversample", "class_weights", "logit_adjustment", "crt"):
        plan = _plan([50, 1], strategy=strategy)
        assert np.isfinite(plan.loss.log_prior).all()
    assert _plan([50, 1], strategy="oversample").sampler.class_targets == (50, 50)


def test_empty_class_is_an_error():
    with pytest.raises(ValueError, match=r"class_balance: classes \['c1'\] have no training"):
        _plan([5, 0, 3], strategy="none")
