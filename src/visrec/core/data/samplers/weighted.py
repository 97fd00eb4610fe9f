"""Class-weighted sampling: rows drawn with replacement so that class ``c`` comes up with
probability proportional to ``n_c ** q`` (Mahajan et al. 2018; Kang et al. 2020): ``q = 1``
is plain shuffling, 0.5 square-root sampling, 0 class-balanced sampling."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

from visrec.core.data.samplers.plan import SamplerPlan


def class_probabilities(train_counts: np.ndarray, q: float) -> np.ndarray:
    """Probability of drawing each class when a row's class is drawn proportionally to ``n^q``."""
    powered = np.asarray(train_counts, dtype=np.float64) ** q
    return powered / powered.sum()


def row_weights(class_index: np.ndarray, class_probabilities: np.ndarray) -> np.ndarray:
    """Per-row weights so that a weighted draw picks class ``c`` with ``class_probabilities[c]``.

    Args:
        class_index: Class of each training row.
        class_probabilities: Wanted probability of each class (sums to 1).
    """
    rows_per_class = np.bincount(class_index, minlength=len(class_probabilities))
    per_row = np.asarray(class_probabilities, dtype=np.float64) / np.maximum(rows_per_class, 1)
    return per_row[class_index]


class ClassWeightedSampler(WeightedRandomSampler):
    """An epoch of as many rows as the training split, drawn with replacement, class ``c``
    with probability ``class_probabilities[c]``; subclasses set the power ``q``.

    Args:
        class_index: Class of each training row.
        class_probabilities: Wanted probability of each class (sums to 1).
        seed: Seeds the sampler's own generator.
    """

    power: ClassVar[float] = 1.0

    def __init__(self, class_index: np.ndarray, class_probabilities: np.ndarray,
                 seed: int) -> None:
        weights = row_weights(class_index, class_probabilities)
        super().__init__(torch.as_tensor(weights, dtype=torch.float64),  # type: ignore[arg-type]
                         num_samples=len(class_index), replacement=True,
                         generator=torch.Generator().manual_seed(seed))

    @classmethod
    def plan(cls, name: str, train_counts: np.ndarray, ratio: float) -> SamplerPlan:
        """The class probabilities ``n_c ** q`` of the training images per class."""
        return SamplerPlan(kind=name, q=cls.power, class_probabilities=tuple(
            class_probabilities(train_counts, cls.power).round(8).tolist()))

    @classmethod
    def from_plan(cls, plan: SamplerPlan, class_index: np.ndarray,
                  seed: int) -> ClassWeightedSampler:
        """The sampler of a plan with ``class_probabilities``."""
        if plan.class_probabilities is None:
            raise ValueError(f"sampler plan {plan.kind!r} needs class_probabilities")
        return cls(class_index, np.asarray(plan.class_probabilities), seed)


class SqrtSampler(ClassWeightedSampler):
    """Square-root sampling: class probability proportional to ``sqrt(n_c)``."""

    power: ClassVar[float] = 0.5


class ClassBalancedSampler(ClassWeightedSampler):
    """Class-balanced sampling: every class equally likely, whatever its size."""

    power: ClassVar[float] = 0.0
