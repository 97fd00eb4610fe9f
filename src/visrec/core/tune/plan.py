"""The search's budget in the user's units, and the proxy sizes derived from it.

Cost is counted in image-steps: one training image through a forward and backward pass.
A validation image (forward only) counts :data:`VAL_WEIGHT` of one. One training with the
current settings costs ``epochs * (epoch_images + VAL_WEIGHT * val_images)``, where an
epoch's images follow the balance plan (oversampling lengthens an epoch). ``budget`` is a
multiple of that: 1.0 lets the whole search cost one more training.

A proxy trial trains ``proxy_epochs`` epochs on ``subset`` of each training class, with
the recipe's schedule compressed to those epochs, and is scored on the whole validation
split (its noise depends on that split's size, not on the subset). The proxy is sized so
that :data:`FULL_LENGTH_TRIALS` trials run to the end within the budget; the pruner's
cuts leave room for more. A trial starts only when the most expensive setting of the
space could still finish within the budget, so the search never overruns it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from visrec.core.balance import BalancePlan
from visrec.core.records import Record
from visrec.core.tune.space import strategy_choice

VAL_WEIGHT = 1.0 / 3.0  # a forward pass costs about a third of a training step
FULL_LENGTH_TRIALS = 8  # proxy trials that fit the budget run to the end
PROXY_EPOCHS = 8  # preferred proxy length: rungs of successive halving need several epochs
MIN_CLASS_IMAGES = 10  # a subset keeps at least this many images of each class (or all)
MIN_SUBSET = 0.05  # a proxy epoch trains on at least this share of the split, if it can


def epoch_images(plan: BalancePlan) -> int:
    """Training images drawn per epoch under ``plan``: its resampling targets, else every
    training image once."""
    if plan.sampler is not None and plan.sampler.class_targets is not None:
        return int(sum(plan.sampler.class_targets))
    return int(sum(plan.train_counts))


def epoch_cost(train_images: float, val_images: int) -> float:
    """Image-steps of one epoch: its training images and a validation pass."""
    return train_images + VAL_WEIGHT * val_images


class SearchPlan(Record):
    """How big the search is, decided before its first trial.

    Attributes:
        budget: ``tuning.budget``: multiples of one training.
        training_cost: Image-steps of one training with the current settings.
        budget_cost: Image-steps the search may spend: ``budget * training_cost``.
        epochs: ``training.epochs`` of the full training.
        proxy_epochs: Epochs of a proxy trial run to the end.
        subset: Share of each training class a proxy trains on.
        proxy_images: Training images in the subset.
        val_images: Validation images every proxy is scored on.
        trial_cost: Image-steps of a proxy with the current settings, run to the end.
        max_trial_cost: The same for the most expensive setting of the space.
        full_length_trials: How many proxies of the current settings fit the budget.
    """

    budget: float
    training_cost: float
    budget_cost: float
    epochs: int
    proxy_epochs: int
    subset: float
    proxy_images: int
    val_images: int
    trial_cost: float
    max_trial_cost: float
    full_length_trials: float

    def describe(self) -> str:
        """The plan in one paragraph, for the log."""
        return (f"budget {self.budget:g} training(s) = {self.budget_cost:,.0f} image-steps "
                f"(one training: {self.epochs} epochs, {self.training_cost:,.0f}); proxy "
                f"trials of {self.proxy_epochs} epochs on {self.subset:.0%} of each training "
                f"class ({self.proxy_images:,} images), scored on {self.val_images:,} "
                f"validation images, {self.trial_cost:,.0f} image-steps each "
                f"({self.trial_cost / self.training_cost:.3f} training); about "
                f"{self.full_length_trials:.1f} full-length trials fit, more as the pruner "
                "cuts some; no trial starts unless the costliest setting still fits")


def subset_rows(manifest: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """``manifest`` keeping ``share`` of each training class (at least
    :data:`MIN_CLASS_IMAGES`, or the whole class) and every non-training row."""
    if share >= 1.0:
        return manifest
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    train = manifest[manifest["split"] == "train"]
    for _, rows in train.groupby("label", sort=True):
        count = min(len(rows), max(MIN_CLASS_IMAGES, math.ceil(share * len(rows))))
        keep.extend(rng.choice(rows.index.to_numpy(), size=count, replace=False).tolist())
    return manifest[(manifest["split"] != "train") | manifest.index.isin(keep)]


def proxy_size(budget: float, epochs: int, train_images: int,
               val_images: int) -> tuple[int, float]:
    """``(proxy_epochs, subset)`` that make :data:`FULL_LENGTH_TRIALS` proxies of the
    current settings cost ``budget`` trainings.

    The proxy keeps up to :data:`PROXY_EPOCHS` epochs (never more than the training's)
    and shrinks the subset, down to :data:`MIN_SUBSET` of the split per epoch, then gives
    up epochs; when the whole split is too little, it trains on all of it for as many
    epochs as the share allows. A validation pass costs the same at any subset: where it
    alone exceeds the share, the proxy is one epoch and fewer trials fit.
    """
    share = budget / FULL_LENGTH_TRIALS * epochs * epoch_cost(train_images, val_images)
    if share >= epoch_cost(train_images, val_images) * min(epochs, PROXY_EPOCHS):
        proxy_epochs = max(1, min(epochs, math.floor(share / epoch_cost(train_images,
                                                                         val_images))))
        return proxy_epochs, 1.0
    for proxy_epochs in range(min(epochs, PROXY_EPOCHS), 0, -1):
        per_epoch = share / proxy_epochs - VAL_WEIGHT * val_images
        if per_epoch >= MIN_SUBSET * train_images:
            return proxy_epochs, per_epoch / train_images
    return 1, max(share - VAL_WEIGHT * val_images, 0.0) / train_images


def make_plan(budget: float, epochs: int, configured: BalancePlan,
              strategies: Mapping[str, BalancePlan], subset_counts: Sequence[int],
              subset: float, proxy_epochs: int, val_images: int) -> SearchPlan:
    """The plan of a search.

    Args:
        budget: Multiples of one training.
        epochs: ``training.epochs``.
        configured: The balance plan of the current settings on the whole training split.
        strategies: The balance plan of each strategy of the space on the subset.
        subset_counts: Training images per class in the subset.
        subset: The subset's share (from :func:`proxy_size`).
        proxy_epochs: Epochs of a full-length proxy.
        val_images: Images of the validation split.
    """
    training_cost = epochs * epoch_cost(epoch_images(configured), val_images)
    configured_subset = strategies.get(strategy_choice(configured.requested))
    own = (epoch_images(configured_subset) if configured_subset is not None
           else sum(subset_counts))
    costliest = max([own, *(epoch_images(plan) for plan in strategies.values())])
    trial_cost = proxy_epochs * epoch_cost(own, val_images)
    return SearchPlan(budget=budget, training_cost=training_cost,
                      budget_cost=budget * training_cost, epochs=epochs,
                      proxy_epochs=proxy_epochs, subset=subset,
                      proxy_images=int(sum(subset_counts)), val_images=val_images,
                      trial_cost=trial_cost,
                      max_trial_cost=proxy_epochs * epoch_cost(costliest, val_images),
                      full_length_trials=budget * training_cost / trial_cost)
