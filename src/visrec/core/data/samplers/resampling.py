"""Random over- or under-sampling of the training rows, drawn anew every epoch."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from visrec.core.data.samplers.plan import SamplerPlan
from visrec.core.seeding import epoch_seed


def resample_targets(train_counts: np.ndarray, kind: str, ratio: float) -> np.ndarray:
    """Rows per class after random over- or under-sampling.

    Args:
        train_counts: Training rows per class.
        kind: ``oversample`` (raise small classes to ``ratio`` x the largest) or
            ``undersample`` (cut large classes to the smallest / ``ratio``).
        ratio: Smallest over largest class after resampling, in (0, 1].

    Returns:
        Integer targets; a class is never shrunk by oversampling nor grown by undersampling.
    """
    counts = np.asarray(train_counts, dtype=np.int64)
    if kind == "oversample":
        return np.maximum(counts, math.ceil(ratio * counts.max() - 1e-9))
    if kind == "undersample":
        return np.minimum(counts, max(counts.min(), math.floor(counts.min() / ratio + 1e-9)))
    raise ValueError(f"resample kind {kind!r}: accepted 'oversample', 'undersample'")


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
        state = epoch_seed(self.seed, epoch)
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

    @classmethod
    def from_plan(cls, plan: SamplerPlan, class_index: np.ndarray,
                  seed: int) -> ResamplingSampler:
        """The sampler of a plan with ``class_targets`` (kind ``oversample`` or
        ``undersample``)."""
        if plan.class_targets is None:
            raise ValueError(f"sampler plan {plan.kind!r} needs class_targets")
        return cls(class_index, np.asarray(plan.class_targets), plan.kind, seed)

    @classmethod
    def plan(cls, name: str, train_counts: np.ndarray, ratio: float) -> SamplerPlan:
        """Rows of each class per epoch after ``name`` (``oversample`` or ``undersample``)
        to ``ratio``."""
        return SamplerPlan(kind=name, ratio=ratio, class_targets=tuple(
            resample_targets(train_counts, name, ratio).tolist()))
