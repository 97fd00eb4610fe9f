"""Tests of P x K batches for metric learning (visrec.core.data.samplers.m_per_class):
K images of each of P classes per batch, classes drawn evenly whatever their size,
reproducible per epoch, split over processes by whole classes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from visrec.core.data.samplers import MPerClassBatches, check_m_per_class

# Eight classes of very different sizes: 142 rows.
SIZES = [4, 6, 8, 12, 16, 24, 32, 40]
LABELS = np.repeat(np.arange(len(SIZES)), SIZES)
K, BATCH = 4, 16  # P = 4 classes per batch


def _shuffled_labels(seed: int = 0) -> np.ndarray:
    """The labels in a random row order (classes interleaved, as in a real manifest)."""
    return np.random.default_rng(seed).permutation(LABELS)


def _batches(rows: list[int], size: int = BATCH) -> list[list[int]]:
    assert len(rows) % size == 0
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def _epoch(sampler: MPerClassBatches, epoch: int) -> list[int]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_every_batch_holds_k_distinct_images_of_p_classes():
    labels = _shuffled_labels()
    sampler = MPerClassBatches(labels, K, BATCH, seed=0)
    rows = list(sampler)
    assert len(rows) == len(sampler) == 128  # 142 rows, whole batches
    for batch in _batches(rows):
        per_class = Counter(labels[batch].tolist())
        assert len(per_class) == BATCH // K
        assert set(per_class.values()) == {K}
        assert len(set(batch)) == BATCH  # K different images of each class (all have >= K)


def test_classes_are_drawn_evenly_whatever_their_size():
    """Over 50 epochs (400 batches) each class is in a batch with probability P / C = 1/2:
    about 200 batches each, standard deviation 10, so +-25% is a 5-sigma band; a draw in
    proportion to class size would give the 4-image class 3% of the batches, not 12.5%."""
    labels = _shuffled_labels()
    sampler = MPerClassBatches(labels, K, BATCH, seed=3)
    counts: Counter[int] = Counter()
    for epoch in range(50):
        counts.update(labels[_epoch(sampler, epoch)].tolist())
    batches = 50 * 128 // BATCH
    mean = batches * BATCH / len(SIZES)  # images per class
    assert sum(counts.values()) == batches * BATCH
    assert sorted(counts) == list(range(len(SIZES)))
    for label, count in counts.items():
        assert abs(count - mean) <= 0.25 * mean, (label, count, mean)


def test_one_epoch_covers_the_classes_evenly():
    """Ten times the rows: one epoch of 88 batches, each class in a batch with probability
    1/2 (44 +- 4.7 batches), so +-50% is a 4.7-sigma band."""
    labels = np.random.default_rng(1).permutation(np.repeat(LABELS, 10))
    for seed in range(3):
        rows = list(MPerClassBatches(labels, K, BATCH, seed))
        assert len(rows) == 1408
        appearances = Counter(label for batch in _batches(rows)
                              for label in set(labels[batch].tolist()))
        mean = len(rows) / BATCH * (BATCH // K) / len(SIZES)
        assert sorted(appearances) == list(range(len(SIZES))), seed
        for label, count in appearances.items():
            assert abs(count - mean) <= 0.5 * mean, (seed, label, count, mean)


def test_same_seed_and_epoch_repeat_other_epochs_and_seeds_differ():
    labels = _shuffled_labels()
    first = MPerClassBatches(labels, K, BATCH, seed=7)
    epochs = [list(first) for _ in range(3)]  # each pass moves to the next epoch
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2] and epochs[0] != epochs[2]
    second = MPerClassBatches(labels, K, BATCH, seed=7)
    assert _epoch(second, 1) == epochs[1]  # a resumed run draws the same epoch
    assert _epoch(second, 0) == epochs[0]
    assert _epoch(first, 2) == epochs[2]  # again, after other epochs
    assert list(MPerClassBatches(labels, K, BATCH, seed=8)) != epochs[0]


def test_the_draw_does_not_depend_on_or_change_the_global_generator():
    from pytorch_metric_learning.utils import common_functions

    labels = _shuffled_labels()
    np.random.seed(1)
    drawn = _epoch(MPerClassBatches(labels, K, BATCH, seed=0), 0)
    state = np.random.get_state()
    sampler = MPerClassBatches(labels, K, BATCH, seed=0)
    for epoch in range(3):
        _epoch(sampler, epoch)
    after = np.random.get_state()
    assert after[0] == state[0] and after[2:] == state[2:]
    np.testing.assert_array_equal(after[1], state[1])
    assert common_functions.NUMPY_RANDOM is np.random  # the library's generator restored
    np.random.seed(2)
    assert _epoch(MPerClassBatches(labels, K, BATCH, seed=0), 0) == drawn


@pytest.mark.parametrize("epoch", [0, 1, 5])
def test_two_processes_share_each_batch_by_whole_classes(epoch):
    labels = _shuffled_labels()
    single = _epoch(MPerClassBatches(labels, K, BATCH, seed=4), epoch)
    ranks = [MPerClassBatches(labels, K, BATCH, seed=4, rank=rank, world_size=2)
             for rank in range(2)]
    shares = [_epoch(sampler, epoch) for sampler in ranks]
    assert len(ranks[0]) == len(ranks[1]) == len(shares[0]) == len(single) // 2
    local = BATCH // 2
    for index, batch in enumerate(_batches(single)):
        parts = [_batches(share, local)[index] for share in shares]
        assert parts[0] + parts[1] == batch  # together: the single-process batch
        classes = []
        for part in parts:
            per_class = Counter(labels[part].tolist())
            assert set(per_class.values()) == {K}  # whole classes: K images each
            assert len(per_class) == local // K
            classes.append(set(per_class))
        assert not classes[0] & classes[1]


def test_check_m_per_class_accepts_a_drawable_setting():
    sizes = {f"class_{i}": size for i, size in enumerate(SIZES)}
    check_m_per_class(sizes, K, BATCH)
    check_m_per_class(sizes, K, 32, world_size=2)
    check_m_per_class(sizes, 4, 32)  # 8 classes per batch: all of them


def test_k_must_divide_the_batch():
    sizes = {"a": 10, "b": 10, "c": 10}
    with pytest.raises(ValueError, match=r"metric_learning\.batch_size = 10 is not a multiple "
                                         r"of metric_learning\.m_per_class = 4"):
        check_m_per_class(sizes, 4, 10)
    # The processes share the global batch; the loss gathers it whole, so a process's
    # share need not hold whole classes.
    check_m_per_class(sizes, 4, 12, world_size=2)


def test_every_class_needs_k_images():
    sizes = {"ant": 8, "bee": 3, "cow": 2, "dog": 9}
    with pytest.raises(ValueError, match=r"metric_learning\.m_per_class = 4: training classes "
                                         r"with fewer images: 'bee' has 3, 'cow' has 2; lower "
                                         r"metric_learning\.m_per_class to 2"):
        check_m_per_class(sizes, 4, 8)


def test_a_batch_cannot_need_more_classes_than_there_are():
    sizes = {"a": 10, "b": 10, "c": 10}
    with pytest.raises(ValueError, match=r"metric_learning\.batch_size / "
                                         r"metric_learning\.m_per_class = 16 / 4 = 4 classes "
                                         r"per batch, but there are 3 training classes"):
        check_m_per_class(sizes, 4, 16)


def test_the_prefix_names_the_parameters():
    with pytest.raises(ValueError, match=r"^retrieval\.m_per_class = 4"):
        check_m_per_class({"a": 2, "b": 9}, 4, 8, prefix="retrieval")


def test_the_sampler_checks_its_setting():
    with pytest.raises(ValueError, match=r"'1' has 3"):
        MPerClassBatches(np.array([0] * 8 + [1] * 3 + [2] * 8), 4, 8, seed=0)
    with pytest.raises(ValueError, match=r"not a multiple of metric_learning\.m_per_class"):
        MPerClassBatches(LABELS, 3, 16, seed=0)
    with pytest.raises(ValueError, match=r"4 classes per batch, but there are 3"):
        MPerClassBatches(np.repeat(np.arange(3), 10), 2, 8, seed=0)


def test_the_batch_must_split_evenly_over_the_processes():
    """10 images over 4 processes: 2 per process passes the K check, but the global batch
    cannot be shared out (``MPerClassBatches`` raises numpy's reshape error)."""
    with pytest.raises(ValueError, match=r"metric_learning\.batch_size = 10 over 4 process"):
        check_m_per_class({str(c): 10 for c in range(6)}, 2, 10, world_size=4)
