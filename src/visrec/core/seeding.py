"""Seeds: one stream per ``(seed, epoch)``, and the global generators set from one seed."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that CPU runs repeat exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch: a separate stream per ``(seed, epoch)``, so that seed 1 at
    epoch 1 does not repeat seed 2 at epoch 0."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
