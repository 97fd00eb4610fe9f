"""Samplers of the training rows, chosen by name from a balance plan's sampler part.

Each sampler is one class in one file with two class methods, ``plan(name, train_counts,
ratio)`` (what it needs, computed from the class sizes and saved in the balance plan) and
``from_plan(plan, class_index, seed)``, and one name in :data:`SAMPLERS`, which is also a
``class_balance.strategy``; :func:`make_sampler` builds the one a plan names. They are
plain ``torch.utils.data.Sampler`` objects, so they combine with any loss, and
:class:`ShardedSampler` splits any of them over several processes.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from torch.utils.data import Sampler

from visrec.core.data.samplers.m_per_class import MPerClassBatches, check_m_per_class
from visrec.core.data.samplers.plan import SamplerPlan
from visrec.core.data.samplers.resampling import ResamplingSampler, resample_targets
from visrec.core.data.samplers.sharded import ShardedSampler
from visrec.core.data.samplers.weighted import (
    ClassBalancedSampler,
    ClassWeightedSampler,
    SqrtSampler,
    class_probabilities,
    row_weights,
)


class SamplerFactory(Protocol):
    """What :data:`SAMPLERS` holds: a class that plans from the class sizes and builds
    itself from its plan."""

    def plan(self, name: str, train_counts: np.ndarray, ratio: float) -> SamplerPlan:
        """The plan of sampler ``name`` for ``train_counts`` training images per class;
        ``ratio`` is ``class_balance.resample.ratio``."""
        ...

    def from_plan(self, plan: SamplerPlan, class_index: np.ndarray,
                  seed: int) -> Sampler[int]:
        """The sampler of ``plan`` over rows of classes ``class_index``, seeded by ``seed``."""
        ...


# By name; each name is also a `class_balance.strategy` (the sampler part). The order is
# the order the accepted strategies are listed in.
SAMPLERS: dict[str, SamplerFactory] = {
    "oversample": ResamplingSampler,
    "undersample": ResamplingSampler,
    "sqrt_sampler": SqrtSampler,
    "class_balanced_sampler": ClassBalancedSampler,
}


def make_sampler(plan: SamplerPlan | None, class_index: np.ndarray,
                 seed: int) -> Sampler[int] | None:
    """The training sampler a plan names, or None to shuffle plainly.

    Args:
        plan: The balance plan's sampler part, or None.
        class_index: Class of each training row.
        seed: Seeds the draws.

    Raises:
        ValueError: If the plan names a kind that is not in :data:`SAMPLERS`.
    """
    if plan is None:
        return None
    if plan.kind not in SAMPLERS:
        raise ValueError(f"balance plan sampler kind {plan.kind!r}: accepted "
                         f"{sorted(SAMPLERS)}")
    return SAMPLERS[plan.kind].from_plan(plan, class_index, seed)


__all__ = ["SAMPLERS", "ClassBalancedSampler", "ClassWeightedSampler", "MPerClassBatches",
           "ResamplingSampler",
           "SamplerFactory", "SamplerPlan", "ShardedSampler", "SqrtSampler",
           "check_m_per_class", "class_probabilities", "make_sampler", "resample_targets",
           "row_weights"]
