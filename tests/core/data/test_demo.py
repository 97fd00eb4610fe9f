"""Tests of visrec.core.data.demo: the long-tailed digits image folder."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import numpy as np
import pytest

from visrec.core.data import long_tail_counts, make_demo_digits


def test_long_tail_counts_profile():
    counts = long_tail_counts(10, 150, 10)
    assert counts == [150, 116, 90, 70, 54, 42, 32, 25, 19, 15]
    assert counts[0] == 150
    assert counts[-1] == 15
    assert all(a > b for a, b in pairwise(counts))


@pytest.mark.parametrize(
    ("num_classes", "largest", "ratio", "expected"),
    [
        (1, 40, 10.0, [40]),
        (2, 100, 4.0, [100, 25]),
        (3, 100, 4.0, [100, 50, 25]),
        (4, 10, 1.0, [10, 10, 10, 10]),
        (3, 2, 100.0, [2, 1, 1]),  # never below one image
    ],
)
def test_long_tail_counts_small_cases(num_classes, largest, ratio, expected):
    assert long_tail_counts(num_classes, largest, ratio) == expected


@pytest.fixture(scope="module")
def digits_seed0():
    return make_demo_digits(test_per_class=30, largest_class=150, imbalance_ratio=10,
                            image_size=32, seed=0)


def _counts(images, split):
    return Counter(key.split("/")[1] for key in images if key.split("/")[0] == split)


def test_make_demo_digits_split_counts(digits_seed0):
    assert {key.split("/")[0] for key in digits_seed0} == {"train", "test"}
    test_counts = _counts(digits_seed0, "test")
    assert test_counts == {str(d): 30 for d in range(10)}
    train_counts = _counts(digits_seed0, "train")
    assert set(train_counts) == {str(d) for d in range(10)}
    assert sorted(train_counts.values(), reverse=True) == long_tail_counts(10, 150, 10)
    assert len(digits_seed0) == 300 + sum(long_tail_counts(10, 150, 10))


def test_make_demo_digits_test_and_train_do_not_overlap(digits_seed0):
    by_digit: dict[str, dict[str, set[str]]] = {}
    for key in digits_seed0:
        split, digit, index = key.split("/")
        by_digit.setdefault(digit, {"train": set(), "test": set()})[split].add(index)
    for digit, splits in by_digit.items():
        assert not splits["train"] & splits["test"], digit


def test_make_demo_digits_images(digits_seed0):
    image = digits_seed0["test/0/" + sorted(
        k.split("/")[2] for k in digits_seed0 if k.startswith("test/0/"))[0]]
    assert image.size == (32, 32)
    assert image.mode == "L"
    pixels = np.asarray(image)
    assert pixels.dtype == np.uint8
    assert pixels.max() > 100  # a drawn digit, not a blank image
    small = make_demo_digits(test_per_class=5, largest_class=10, imbalance_ratio=2,
                             image_size=12, seed=0)
    assert {im.size for im in small.values()} == {(12, 12)}


def test_make_demo_digits_is_deterministic(digits_seed0):
    again = make_demo_digits(test_per_class=30, largest_class=150, imbalance_ratio=10,
                             image_size=32, seed=0)
    assert list(again) == list(digits_seed0)
    for key, image in digits_seed0.items():
        assert again[key].tobytes() == image.tobytes(), key


def test_make_demo_digits_other_seed_draws_other_images(digits_seed0):
    other = make_demo_digits(test_per_class=30, largest_class=150, imbalance_ratio=10,
                             image_size=32, seed=1)
    assert _counts(other, "train") == _counts(digits_seed0, "train")
    assert set(other) != set(digits_seed0)


def test_make_demo_digits_too_few_images():
    with pytest.raises(ValueError, match="too few"):
        make_demo_digits(test_per_class=30, largest_class=170, imbalance_ratio=1,
                         image_size=8, seed=0)
