"""Tests of visrec.core.data.samplers: weighted sampling and per-epoch over/under-sampling."""

from __future__ import annotations

import numpy as np
import pytest
from torch.utils.data import WeightedRandomSampler

from visrec.core.data.samplers import (
    SAMPLERS,
    ClassBalancedSampler,
    ClassWeightedSampler,
    ResamplingSampler,
    SamplerPlan,
    SqrtSampler,
    class_probabilities,
    make_sampler,
    resample_targets,
    row_weights,
)

COUNTS = np.array([900, 90, 10])
SMALL_COUNTS = np.array([50, 12, 3])


def _class_index(counts, seed=0):
    """Class of each row, shuffled so that row order says nothing about the class."""
    labels = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(seed).permutation(labels)


def _resampler(counts, kind, ratio, seed=0):
    class_index = _class_index(counts)
    targets = resample_targets(counts, kind, ratio)
    plan = SamplerPlan(kind=kind, ratio=ratio, class_targets=tuple(targets.tolist()))
    return make_sampler(plan, class_index, seed), class_index, targets


def test_row_weights_give_each_class_its_probability():
    class_index = _class_index(np.array([5, 3, 2]))
    wanted = np.array([0.2, 0.3, 0.5])
    weights = row_weights(class_index, wanted)
    assert weights.shape == (10,)
    per_class = np.bincount(class_index, weights=weights, minlength=3)
    np.testing.assert_allclose(per_class, wanted)
    for c, n in enumerate([5, 3, 2]):  # rows of a class are equally likely
        np.testing.assert_allclose(weights[class_index == c], wanted[c] / n)


@pytest.mark.parametrize("q", [0.0, 0.5, 1.0])
def test_row_weights_match_class_probabilities(q):
    class_index = _class_index(COUNTS)
    wanted = class_probabilities(COUNTS, q)
    per_class = np.bincount(class_index, weights=row_weights(class_index, wanted), minlength=3)
    np.testing.assert_allclose(per_class, wanted)
    np.testing.assert_allclose(per_class.sum(), 1.0)


def test_row_weights_tolerate_a_class_without_rows():
    class_index = np.array([0, 0, 2, 2, 2])
    weights = row_weights(class_index, np.array([0.5, 0.0, 0.5]))
    np.testing.assert_allclose(weights, [0.25, 0.25, 1 / 6, 1 / 6, 1 / 6])


@pytest.mark.parametrize(("name", "kind", "q"), [("sqrt_sampler", SqrtSampler, 0.5),
                                                 ("class_balanced_sampler", ClassBalancedSampler,
                                                  0.0)])
def test_each_weighted_sampler_plans_class_probabilities_n_power_q(name, kind, q):
    plan = SAMPLERS[name].plan(name, COUNTS, 1.0)
    assert (plan.kind, plan.q) == (name, q)
    np.testing.assert_allclose(plan.class_probabilities, COUNTS**q / (COUNTS**q).sum(),
                               atol=1e-8)
    assert type(make_sampler(plan, _class_index(COUNTS), seed=0)) is kind


@pytest.mark.parametrize("name", ["oversample", "undersample"])
def test_each_resampler_plans_its_class_targets(name):
    plan = SAMPLERS[name].plan(name, COUNTS, 0.5)
    assert (plan.kind, plan.ratio) == (name, 0.5)
    assert plan.class_targets == tuple(resample_targets(COUNTS, name, 0.5).tolist())


def test_make_sampler_none_is_plain_shuffling():
    assert make_sampler(None, _class_index(COUNTS), seed=0) is None


@pytest.mark.parametrize("q", [0.0, 0.5, 1.0], ids=["balanced", "sqrt", "natural"])
def test_weighted_sampler_draws_classes_proportional_to_n_power_q(q):
    class_index = _class_index(COUNTS)
    plan = SamplerPlan(kind="sqrt_sampler", q=q, class_probabilities=tuple(
        class_probabilities(COUNTS, q).round(8).tolist()))
    sampler = make_sampler(plan, class_index, seed=3)
    assert isinstance(sampler, ClassWeightedSampler)
    assert isinstance(sampler, WeightedRandomSampler)
    assert len(sampler) == len(class_index)
    drawn = np.concatenate([np.fromiter(sampler, dtype=np.int64) for _ in range(30)])
    assert len(drawn) == 30_000
    assert drawn.min() >= 0 and drawn.max() < len(class_index)
    frequency = np.bincount(class_index[drawn], minlength=3) / len(drawn)
    expected = COUNTS**q / (COUNTS**q).sum()
    # five standard errors of a frequency over 30000 draws
    tolerance = 5 * np.sqrt(expected * (1 - expected) / len(drawn))
    np.testing.assert_array_less(np.abs(frequency - expected), tolerance)


def test_weighted_sampler_natural_frequencies_and_balanced_differ():
    """q = 1 keeps the 90 % head class; q = 0 brings it down to a third."""
    class_index = _class_index(COUNTS)
    shares = {}
    for q in (0.0, 1.0):
        plan = SamplerPlan(kind="sqrt_sampler",
                           class_probabilities=tuple(class_probabilities(COUNTS, q).tolist()))
        sampler = make_sampler(plan, class_index, seed=0)
        drawn = np.concatenate([np.fromiter(sampler, dtype=np.int64) for _ in range(10)])
        shares[q] = np.mean(class_index[drawn] == 0)
    assert shares[1.0] == pytest.approx(0.9, abs=0.02)
    assert shares[0.0] == pytest.approx(1 / 3, abs=0.03)


def test_weighted_sampler_same_seed_same_draw():
    class_index = _class_index(COUNTS)
    plan = SamplerPlan(kind="sqrt_sampler",
                       class_probabilities=tuple(class_probabilities(COUNTS, 0.5).tolist()))
    first, again, other = (make_sampler(plan, class_index, seed) for seed in (7, 7, 8))
    draws = [list(first), list(first)]
    assert draws == [list(again), list(again)]
    assert draws[0] != draws[1]  # the generator moves on between epochs
    assert list(other) != draws[0]


@pytest.mark.parametrize("ratio", [1.0, 0.5])
def test_oversampling_hits_targets_and_keeps_every_row(ratio):
    sampler, class_index, targets = _resampler(SMALL_COUNTS, "oversample", ratio)
    assert isinstance(sampler, ResamplingSampler)
    assert len(sampler) == targets.sum()
    for _ in range(3):
        indices = np.array(list(sampler))
        assert len(indices) == len(sampler)
        np.testing.assert_array_equal(np.bincount(class_index[indices], minlength=3), targets)
        # RandomOverSampler keeps the originals and adds duplicates of the small classes
        assert set(indices.tolist()) == set(range(len(class_index)))
        head = indices[class_index[indices] == 0]
        assert len(np.unique(head)) == len(head) == SMALL_COUNTS[0]
        # shuffled: the originals do not come first, in row order
        assert not np.array_equal(indices[:len(class_index)], np.arange(len(class_index)))


def test_oversampling_targets_numbers():
    np.testing.assert_array_equal(_resampler(SMALL_COUNTS, "oversample", 1.0)[2], [50, 50, 50])
    np.testing.assert_array_equal(_resampler(SMALL_COUNTS, "oversample", 0.5)[2], [50, 25, 25])


def test_resampling_epochs_differ_but_keep_class_counts():
    sampler, class_index, targets = _resampler(SMALL_COUNTS, "oversample", 1.0)
    epochs = [np.array(list(sampler)) for _ in range(3)]
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[1], epochs[2])
    for indices in epochs:
        np.testing.assert_array_equal(np.bincount(class_index[indices], minlength=3), targets)
    # iterating is the draw of the next epoch, numbered from 0
    np.testing.assert_array_equal(epochs[1], sampler.indices(1))


@pytest.mark.parametrize("kind", ["oversample", "undersample"])
def test_resampling_same_seed_repeats_exactly(kind):
    first = _resampler(SMALL_COUNTS, kind, 1.0, seed=11)[0]
    again = _resampler(SMALL_COUNTS, kind, 1.0, seed=11)[0]
    other = _resampler(SMALL_COUNTS, kind, 1.0, seed=12)[0]
    draws = [list(first) for _ in range(2)]
    assert draws == [list(again) for _ in range(2)]
    assert list(other) != draws[0]


@pytest.mark.parametrize(("ratio", "expected"), [(1.0, [3, 3, 3]), (0.25, [12, 12, 3])])
def test_undersampling_hits_targets_without_duplicates(ratio, expected):
    sampler, class_index, targets = _resampler(SMALL_COUNTS, "undersample", ratio)
    np.testing.assert_array_equal(targets, expected)
    assert len(sampler) == sum(expected)
    seen = set()
    for _ in range(3):
        indices = np.array(list(sampler))
        assert len(np.unique(indices)) == len(indices) == sum(expected)
        assert indices.min() >= 0 and indices.max() < len(class_index)
        np.testing.assert_array_equal(np.bincount(class_index[indices], minlength=3), expected)
        # the smallest class is never cut
        np.testing.assert_array_equal(np.sort(indices[class_index[indices] == 2]),
                                      np.flatnonzero(class_index == 2))
        seen |= set(indices[class_index[indices] == 0].tolist())
        assert np.any(np.diff(class_index[indices]) < 0)  # shuffled, not grouped by class
    assert len(seen) > expected[0]  # the head rows kept change from epoch to epoch


@pytest.mark.parametrize(("kind", "targets", "expected"), [
    ("oversample", [20, 6, 8], [20, 0, 8]),
    ("undersample", [4, 6, 4], [4, 0, 4]),
])
def test_resampling_ignores_targets_of_classes_without_rows(kind, targets, expected):
    class_index = _class_index(np.array([12, 0, 4]))
    sampler = make_sampler(SamplerPlan(kind=kind, class_targets=tuple(targets)), class_index,
                           seed=0)
    assert len(sampler) == sum(expected)
    indices = np.array(list(sampler))
    np.testing.assert_array_equal(np.bincount(class_index[indices], minlength=3), expected)


@pytest.mark.parametrize("kind", ["smote", "Weighted", "tomek"])
def test_make_sampler_unknown_kind_names_it(kind):
    with pytest.raises(ValueError, match=f"'{kind}'") as error:
        make_sampler(SamplerPlan(kind=kind), _class_index(SMALL_COUNTS), seed=0)
    assert "oversample" in str(error.value)


@pytest.mark.parametrize(("kind", "needs"), [("sqrt_sampler", "class_probabilities"),
                                           ("class_balanced_sampler", "class_probabilities"),
                                           ("oversample", "class_targets"),
                                           ("undersample", "class_targets")])
def test_make_sampler_plan_without_its_numbers_names_them(kind, needs):
    with pytest.raises(ValueError, match=f"sampler plan '{kind}' needs {needs}"):
        make_sampler(SamplerPlan(kind=kind), _class_index(SMALL_COUNTS), seed=0)


@pytest.mark.parametrize(("counts", "kind", "ratio", "expected"), [
    ([900, 90, 10], "oversample", 1.0, [900, 900, 900]),
    ([900, 90, 10], "oversample", 0.5, [900, 450, 450]),
    ([900, 500, 10], "oversample", 0.5, [900, 500, 450]),  # never shrinks a class
    ([7, 2], "oversample", 0.5, [7, 4]),  # ceil(3.5)
    ([100, 3], "oversample", 0.07, [100, 7]),  # 0.07 * 100 = 7.000000000000001 -> 7
    ([900, 90, 10], "undersample", 1.0, [10, 10, 10]),
    ([900, 90, 10], "undersample", 0.25, [40, 40, 10]),
    ([900, 30, 10], "undersample", 0.25, [40, 30, 10]),  # never grows a class
    ([7, 2], "undersample", 0.3, [6, 2]),  # floor(6.67)
    ([500, 7], "undersample", 0.07, [100, 7]),  # 7 / 0.07 = 99.99999999999999 -> 100
])
def test_resample_targets_numbers(counts, kind, ratio, expected):
    targets = resample_targets(np.array(counts), kind, ratio)
    np.testing.assert_array_equal(targets, expected)
    assert np.issubdtype(targets.dtype, np.integer)


def test_resample_targets_unknown_kind_names_it():
    with pytest.raises(ValueError, match="'smote'"):
        resample_targets(COUNTS, "smote", 1.0)
