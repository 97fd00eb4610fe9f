"""Samplers of training rows built from a balance plan's ``sampler`` part.

A weighted sampler draws rows with replacement so that class ``c`` comes up with a
chosen probability; a resampling sampler draws a new over- or under-sampled index each
epoch with imbalanced-learn. Both are plain ``torch.utils.data.Sampler`` objects.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler, WeightedRandomSampler


def row_weights(class_index: np.ndarray, class_probabilities: np.ndarray) -> np.ndarray:
    """Per-row weights so that a weighted draw picks class ``c`` with ``class_probabilities[c]``.

    Args:
        class_index: Class of each training row.
        class_probabilities: Wanted probability of each class (sums to 1).
    """
    rows_per_class = np.bincount(class_index, minlength=len(class_probabilities))
    per_row = np.asarray(class_probabilities, dtype=np.float64) / np.maximum(rows_per_class, 1)
    return per_row[class_index]


class ResamplingSampler(Sampler[int]):
    """Random over- or under-sampling of the rows, drawn anew every epoch (imbalanced-learn).

    Args:
        class_index: Class of each row.
        targets: Rows per class after resampling.
        kind: ``oversample`` or ``undersample``.
        seed: With the epoch, seeds each draw, so runs repeat exactly.
    """

    def __init__(self, class_index: np.ndarray, targets: np.ndarray, kind: str,
                 seed: int) -> None:
        self.class_index = np.asarray(class_index, dtype=np.int64)
        present = np.unique(self.class_index)
        self.targets = {int(c): int(targets[c]) for c in present}
        self.kind = kind
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return sum(self.targets.values())

    def indices(self, epoch: int) -> np.ndarray:
        """The resampled row indices of ``epoch``, shuffled."""
        from imblearn.over_sampling import RandomOverSampler  # noqa: PLC0415
        from imblearn.under_sampling import RandomUnderSampler  # noqa: PLC0415

        resampler = RandomOverSampler if self.kind == "oversample" else RandomUnderSampler
        rows = np.arange(len(self.class_index)).reshape(-1, 1)
        # One stream per (seed, epoch): seed 1 at epoch 1 must not repeat seed 2 at epoch 0.
        state = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])
        drawn, _ = resampler(sampling_strategy=self.targets,
                             random_state=state).fit_resample(rows, self.class_index)
        order = np.random.default_rng(state).permutation(len(drawn))
        return drawn[order, 0]

    def set_epoch(self, epoch: int) -> None:
        """Draw the rows of ``epoch`` next (resuming a run, or in step with other processes)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        indices = self.indices(self.epoch)
        self.epoch += 1
        return iter(indices.tolist())


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
        rows = self.size if self.base is None else len(self.base)
        return math.ceil(rows / self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Draw the rows of ``epoch`` next; every process must call it with the same epoch."""
        self.epoch = epoch

    def _epoch_rows(self) -> np.ndarray:
        state = int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0])
        if self.base is None:
            return np.random.default_rng(state).permutation(self.size)
        generator = getattr(self.base, "generator", None)
        if isinstance(generator, torch.Generator):
            generator.manual_seed(state)
        if callable(getattr(self.base, "set_epoch", None)):
            self.base.set_epoch(self.epoch)
        return np.fromiter(iter(self.base), dtype=np.int64)

    def __iter__(self) -> Iterator[int]:
        rows = self._epoch_rows()
        self.epoch += 1
        padded = np.resize(rows, len(self) * self.world_size)  # repeats the first rows
        return iter(padded[self.rank::self.world_size].tolist())


def make_sampler(spec: dict | None, class_index: np.ndarray, seed: int) -> Sampler[int] | None:
    """The training sampler of a plan's ``sampler`` part, or None to shuffle plainly.

    Args:
        spec: ``{"kind": "weighted", "class_probabilities": [...]}`` or ``{"kind":
            "oversample" | "undersample", "class_targets": [...]}``, or None.
        class_index: Class of each training row.
        seed: Seeds the draws.

    Raises:
        ValueError: If ``spec`` names an unknown kind.
    """
    if spec is None:
        return None
    if spec["kind"] == "weighted":
        weights = row_weights(class_index, np.asarray(spec["class_probabilities"]))
        return WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.float64),
                                     num_samples=len(class_index), replacement=True,
                                     generator=torch.Generator().manual_seed(seed))
    if spec["kind"] in ("oversample", "undersample"):
        return ResamplingSampler(class_index, np.asarray(spec["class_targets"]), spec["kind"],
                                 seed)
    raise ValueError(f"balance plan sampler kind {spec['kind']!r}: accepted 'weighted', "
                     "'oversample', 'undersample'")
