"""Tests of visrec.core.balance: class counts and the imbalance remedy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import WeightedRandomSampler

from visrec.core.balance import (
    STRATEGIES,
    class_counts,
    imbalance_ratio,
    inverse_frequency_weights,
    make_balance_plan,
    sample_weights,
)


def _manifest(counts: dict[tuple[str, str], int]) -> pd.DataFrame:
    rows = [(f"{split}/{label}/{i}.png", label, split)
            for (label, split), n in counts.items() for i in range(n)]
    return pd.DataFrame(rows, columns=["path", "label", "split"])


def test_class_counts_table():
    manifest = _manifest({("cat", "train"): 5, ("cat", "val"): 1, ("cat", "test"): 2,
                          ("dog", "train"): 3, ("dog", "test"): 4})
    table = class_counts(manifest, ["dog", "cat", "eel"])
    expected = pd.DataFrame({"label": ["dog", "cat", "eel"], "train": [3, 5, 0],
                             "val": [0, 1, 0], "test": [4, 2, 0]})
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)
    assert list(table.columns) == ["label", "train", "val", "test"]
    for column in ("train", "val", "test"):
        assert pd.api.types.is_integer_dtype(table[column]), column


@pytest.mark.parametrize(("counts", "expected"), [
    ([100, 10], 10.0),
    ([7, 7, 7], 1.0),
    ([0, 5, 20], 4.0),  # empty classes ignored
    ([150, 15, 30], 10.0),
])
def test_imbalance_ratio(counts, expected):
    assert imbalance_ratio(np.array(counts)) == pytest.approx(expected)


def test_inverse_frequency_weights_numbers():
    np.testing.assert_allclose(inverse_frequency_weights(np.array([100, 10])), [0.55, 5.5])
    np.testing.assert_allclose(inverse_frequency_weights(np.array([8, 8, 8, 8])), [1, 1, 1, 1])
    np.testing.assert_allclose(inverse_frequency_weights(np.array([60, 30, 10])),
                               [100 / 180, 100 / 90, 100 / 30])


def test_inverse_frequency_weights_equalise_classes():
    counts = np.array([500, 120, 7, 33])
    weights = inverse_frequency_weights(counts)
    # Each class carries the same total weight N / K, and the weights average to 1 per row.
    np.testing.assert_allclose(weights * counts, np.full(4, counts.sum() / 4))
    assert (weights * counts).sum() == pytest.approx(counts.sum())


def test_balance_plan_none():
    plan = make_balance_plan("none", ["a", "b"], np.array([100, 10]))
    assert plan == {"strategy": "none", "classes": ["a", "b"], "train_counts": [100, 10],
                    "imbalance_ratio": 10.0, "class_weights": None, "sampling_weights": None}
    assert sample_weights(plan, np.array([0, 1, 1])) is None


def test_balance_plan_class_weights():
    plan = make_balance_plan("class_weights", ["a", "b"], np.array([100, 10]))
    assert plan["class_weights"] == pytest.approx([0.55, 5.5])
    assert plan["sampling_weights"] is None
    assert plan["imbalance_ratio"] == 10.0
    assert sample_weights(plan, np.array([0, 1])) is None


def test_balance_plan_sampler():
    plan = make_balance_plan("sampler", ["a", "b", "c"], np.array([100, 10, 4]))
    assert plan["class_weights"] is None
    assert plan["sampling_weights"] == pytest.approx([0.01, 0.1, 0.25])
    assert plan["train_counts"] == [100, 10, 4]
    assert all(type(n) is int for n in plan["train_counts"])
    weights = sample_weights(plan, np.array([2, 0, 1, 0]))
    np.testing.assert_allclose(weights, [0.25, 0.01, 0.1, 0.01])
    assert weights.dtype == np.float64


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_balance_plan_is_json_friendly(strategy):
    plan = make_balance_plan(strategy, ["a", "b"], np.array([30, 3]))
    assert json.loads(json.dumps(plan)) == plan


def test_sampler_weights_draw_classes_uniformly():
    counts = np.array([900, 90, 10])
    class_index = np.repeat(np.arange(3), counts)
    plan = make_balance_plan("sampler", ["a", "b", "c"], counts)
    weights = sample_weights(plan, class_index)
    sampler = WeightedRandomSampler(torch.as_tensor(weights), num_samples=20000,
                                    replacement=True,
                                    generator=torch.Generator().manual_seed(0))
    drawn = class_index[np.fromiter(sampler, dtype=np.int64)]
    frequencies = np.bincount(drawn, minlength=3) / len(drawn)
    np.testing.assert_allclose(frequencies, [1 / 3, 1 / 3, 1 / 3], atol=0.02)
    # Without the plan the draw follows the imbalance.
    plain = WeightedRandomSampler(torch.ones(len(class_index), dtype=torch.float64),
                                  num_samples=20000, replacement=True,
                                  generator=torch.Generator().manual_seed(0))
    plain_freq = np.bincount(class_index[np.fromiter(plain, dtype=np.int64)], minlength=3) / 20000
    np.testing.assert_allclose(plain_freq, counts / counts.sum(), atol=0.02)


def test_unknown_strategy_is_an_error():
    with pytest.raises(ValueError, match=r"class_balance\.strategy = 'bogus'") as info:
        make_balance_plan("bogus", ["a", "b"], np.array([1, 2]))
    assert "['none', 'class_weights', 'sampler']" in str(info.value)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_empty_class_is_an_error(strategy):
    with pytest.raises(ValueError, match=r"class_balance: classes \['b'\] have no training"):
        make_balance_plan(strategy, ["a", "b", "c"], np.array([5, 0, 3]))
