"""Tests of the distributed ``ShardedSampler`` (visrec.core.data.samplers.sharded): each
process draws its share of one epoch that every rank agrees on, so that a resumed or
distributed run sees the same rows as one process would."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import WeightedRandomSampler

from visrec.core.data.samplers import ResamplingSampler, ShardedSampler


def _shards(size: int, world_size: int = 2, seed: int = 0) -> list[list[int]]:
    """Epoch 0 of each rank's ShardedSampler over a plain shuffle of ``size`` rows."""
    return [list(ShardedSampler(None, size, rank, world_size, seed))
            for rank in range(world_size)]


@pytest.mark.parametrize("size", [10, 11])
def test_shards_split_a_shuffled_epoch(size):
    first, second = _shards(size)
    assert len(first) == len(second) == (size + 1) // 2
    assert len(ShardedSampler(None, size, 0, 2, 0)) == len(first)
    assert set(first) | set(second) == set(range(size))  # the whole epoch ...
    overlap = set(first) & set(second)
    assert len(overlap) == (size % 2)  # ... with one row repeated to pad an odd epoch
    assert len(first) + len(second) - size == size % 2


def test_shard_epochs_differ_and_set_epoch_repeats_one():
    sampler = ShardedSampler(None, 20, rank=0, world_size=2, seed=0)
    epochs = [list(sampler) for _ in range(3)]  # each pass moves to the next epoch
    assert epochs[0] != epochs[1] != epochs[2]
    sampler.set_epoch(1)
    assert list(sampler) == epochs[1]
    assert list(ShardedSampler(None, 20, 0, 2, seed=1)) != epochs[0]  # another seed


def test_one_process_shard_is_the_base_epoch_and_two_split_it():
    """Each process's base sampler is reseeded from (seed, epoch): ranks agree on the epoch
    even when their generators started elsewhere, and set_epoch replays an epoch."""
    weights = torch.tensor([0.5] * 10 + [0.3] * 10 + [0.2] * 10, dtype=torch.float64)

    def shards(world_size: int, epoch: int) -> list[list[int]]:
        samplers = []
        for rank in range(world_size):
            base = WeightedRandomSampler(weights, num_samples=30, replacement=True,
                                         generator=torch.Generator().manual_seed(100 + rank))
            samplers.append(ShardedSampler(base, 30, rank, world_size, seed=0))
            samplers[-1].set_epoch(epoch)
        return [list(sampler) for sampler in samplers]

    (whole,) = shards(1, epoch=4)
    first, second = shards(2, epoch=4)
    interleaved = [row for pair in zip(first, second, strict=True) for row in pair]
    assert interleaved == whole  # every rank drew the same base epoch and took its share
    assert shards(1, epoch=4) == [whole]
    assert shards(1, epoch=5) != [whole]


def test_shards_of_a_resampling_sampler_follow_its_epochs():
    """The base sampler is told the epoch: the ranks split exactly its resampled epoch."""
    classes = np.array([0] * 12 + [1] * 3)

    def base() -> ResamplingSampler:
        return ResamplingSampler(classes, np.array([12, 12]), "oversample", seed=3)

    samplers = [ShardedSampler(base(), len(classes), rank, 2, seed=0) for rank in range(2)]
    for sampler in samplers:
        sampler.set_epoch(2)
    first, second = (list(sampler) for sampler in samplers)
    assert len(first) == len(second) == 12
    interleaved = [row for pair in zip(first, second, strict=True) for row in pair]
    assert interleaved == base().indices(2).tolist()
    assert interleaved != base().indices(3).tolist()
    assert list(samplers[0]) == [int(row) for row in base().indices(3)[0::2]]  # next epoch


def test_weighted_shards_keep_the_class_frequencies():
    rows_per_class, probabilities = 10, np.array([0.6, 0.3, 0.1])
    weights = torch.tensor(np.repeat(probabilities / rows_per_class, rows_per_class))
    shards = [ShardedSampler(WeightedRandomSampler(weights, 3000, replacement=True,
                                                   generator=torch.Generator()),
                             30, rank, 2, seed=7) for rank in range(2)]
    drawn = np.array([row for _epoch in range(3) for shard in shards for row in shard])
    assert len(drawn) == 3 * 3000
    frequencies = np.bincount(drawn // rows_per_class, minlength=3) / len(drawn)
    np.testing.assert_allclose(frequencies, probabilities, atol=0.02)
