"""One process's share of every epoch, for training in several processes."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized
from typing import cast

import numpy as np
import torch
from torch.utils.data import Sampler

from visrec.core.seeding import epoch_seed


class ShardedSampler(Sampler[int]):
    """One process's share of an epoch for distributed training, over any base sampler.

    Every process draws the same epoch from ``base`` (or the same permutation), seeded by
    ``(seed, epoch)``, pads it to a multiple of ``world_size`` by repeating rows, and keeps
    every ``world_size``-th row from ``rank``. So class-balanced or resampled epochs are
    split, not changed, by the number of processes.

    Args:
        base: The single-process sampler (weighted, resampling), or None to shuffle.
        size: Rows of the dataset (used when ``base`` is None).
        rank: This process's index.
        world_size: Number of processes.
        seed: With the epoch, seeds the draw.
    """

    def __init__(self, base: Sampler[int] | None, size: int, rank: int, world_size: int,
                 seed: int) -> None:
        self.base, self.size = base, size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.epoch = 0

    def __len__(self) -> int:
        rows = self.size if self.base is None else len(cast(Sized, self.base))
        return math.ceil(rows / self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Draw the rows of ``epoch`` next; every process must call it with the same epoch."""
        self.epoch = epoch

    def _epoch_rows(self) -> np.ndarray:
        state = epoch_seed(self.seed, self.epoch)
        if self.base is None:
            return np.random.default_rng(state).permutation(self.size)
        generator = getattr(self.base, "generator", None)
        if isinstance(generator, torch.Generator):
            generator.manual_seed(state)
        set_epoch = getattr(self.base, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.epoch)
        return np.fromiter(iter(self.base), dtype=np.int64)

    def __iter__(self) -> Iterator[int]:
        rows = self._epoch_rows()
        self.epoch += 1
        padded = np.resize(rows, len(self) * self.world_size)  # repeats the first rows
        return iter(padded[self.rank::self.world_size].tolist())
