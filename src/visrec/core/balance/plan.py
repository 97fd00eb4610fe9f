"""The plan that counters class imbalance: data (JSON) that training builds its parts from.

Which sampler draws the training rows (:mod:`visrec.core.data.samplers`), which class
weights and loss training uses (:mod:`visrec.core.train.losses`), whether the classifier
is re-trained afterwards, and why. Each part is independent of the others, so that a
sampler combines with any loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from visrec.core.balance.analysis import (
    effective_number_weights,
    imbalance_ratio,
    inverse_frequency_weights,
)
from visrec.core.data.samplers import SAMPLERS, SamplerPlan
from visrec.core.records import Record

# Remedies for class imbalance, by the part of training each one changes. A strategy may
# list several names, at most one per part: [class_balanced_sampler, focal]. Every sampler
# of the registry is a remedy of the sampler part.
BALANCE_PARTS = {
    **dict.fromkeys(SAMPLERS, "sampler"),
    "class_weights": "class weights", "drw": "class weights",
    "focal": "loss",
    "logit_adjustment": "logit adjustment",
    "crt": "classifier re-training",
}
BALANCE_STRATEGIES = ("none", *BALANCE_PARTS, "auto")
# What `auto` applies when the imbalance is large enough: training-time logit adjustment is
# cheap, changes neither the data order nor the epoch length, and is consistent for the
# balanced error (Menon et al. 2021); re-training the classifier on class-balanced batches
# afterwards (Kang et al. 2020) then corrects what is left in the last layer, for a few
# epochs of the head alone. Oversampling can score as well on small sets, but lengthens
# every epoch by up to K * n_max / N (more than 10x on ImageNet-LT).
AUTO_REMEDY = ("logit_adjustment", "crt")


@dataclass(frozen=True)
class BalanceSettings:
    """What the plan is made from (the ``class_balance`` parameters, as core values).

    Attributes:
        strategies: Remedy names of :data:`BALANCE_STRATEGIES`: ``("auto",)``,
            ``("none",)``, or at most one name per part.
        class_weights: ``effective_number`` or ``inverse_frequency``: the loss weights of
            ``class_weights`` and ``drw``.
        beta: Effective-number parameter (Cui et al. 2019).
        resample_ratio: Smallest over largest class after over- or under-sampling.
        focal_gamma: Focal loss exponent.
        logit_adjustment_tau: Scale of the log prior added to the logits.
        drw_start_fraction: Share of the epochs before deferred weights apply.
        crt_epochs: Epochs of classifier re-training.
        crt_lr: Its learning rate per 256 images.
        min_imbalance_ratio: Below this train imbalance ratio, ``auto`` applies nothing.
    """

    strategies: tuple[str, ...]
    class_weights: str
    beta: float
    resample_ratio: float
    focal_gamma: float
    logit_adjustment_tau: float
    drw_start_fraction: float
    crt_epochs: int
    crt_lr: float
    min_imbalance_ratio: float


class ClassWeightsPlan(Record):
    """Loss weights per class, from ``start_fraction`` of the epochs on (0: all along)."""

    kind: str  # effective_number or inverse_frequency
    beta: float
    values: tuple[float, ...]
    start_fraction: float  # > 0 for deferred re-weighting (Cao et al. 2019)


class LossPlan(Record):
    """The loss part of the plan.

    Attributes:
        name: A loss of :data:`visrec.core.train.losses.LOSSES` that the plan asks for
            (``focal``), or None to keep ``training.loss``.
        options: Keyword arguments of that loss (``gamma``).
        logit_adjustment_tau: Scale of the log prior added to the logits in training
            (Menon et al. 2021), or None.
        log_prior: Log of the training class frequencies.
    """

    name: str | None
    options: dict[str, float]
    logit_adjustment_tau: float | None
    log_prior: tuple[float, ...]


class CrtPlan(Record):
    """Classifier re-training on class-balanced batches (Kang et al. 2020)."""

    epochs: int
    lr: float  # per 256 images
    sampler: SamplerPlan


class BalancePlan(Record):
    """The remedy for imbalance that training applies.

    Attributes:
        strategy: The applied remedies joined by ``+`` (``none`` for none).
        requested: ``class_balance.strategy`` as given.
        components: The applied remedy names.
        reason: Why, in one sentence.
        classes: Class names in class-index order.
        train_counts: Training images per class.
        imbalance_ratio: Largest over smallest training class.
        sampler: How rows are drawn, or None to shuffle.
        class_weights: Loss weights per class, or None.
        loss: The loss and logit adjustment.
        crt: Classifier re-training, or None.
    """

    strategy: str
    requested: tuple[str, ...]
    components: tuple[str, ...]
    reason: str
    classes: tuple[str, ...]
    train_counts: tuple[int, ...]
    imbalance_ratio: float
    sampler: SamplerPlan | None
    class_weights: ClassWeightsPlan | None
    loss: LossPlan
    crt: CrtPlan | None


def resolve_strategy(requested: tuple[str, ...], ratio: float,
                     min_imbalance_ratio: float) -> tuple[tuple[str, ...], str]:
    """The remedies to apply and why.

    Args:
        requested: ``class_balance.strategy`` as a tuple of names.
        ratio: Train imbalance ratio.
        min_imbalance_ratio: Below this ratio, ``auto`` applies nothing.

    Returns:
        ``(components, reason)``: the remedy names (empty for none) and one sentence.
    """
    if requested == ("auto",):
        if ratio < min_imbalance_ratio:
            return (), (f"auto: train imbalance ratio {ratio:.1f} is below "
                        f"class_balance.auto.min_imbalance_ratio = {min_imbalance_ratio:g}, so "
                        "plain cross-entropy (a remedy would cost head-class accuracy for "
                        "little gain)")
        return AUTO_REMEDY, (
            f"auto: train imbalance ratio {ratio:.1f} >= class_balance.auto.min_imbalance_ratio"
            f" = {min_imbalance_ratio:g}, so logit adjustment (Menon et al. 2021) during "
            "training, then classifier re-training on class-balanced batches (Kang et al. "
            "2020): strong on the tail without lengthening epochs (see the long-tail "
            "benchmark in benchmarks/README.md)")
    if requested == ("none",):
        return (), "none: requested; plain cross-entropy"
    return requested, f"{' + '.join(requested)}: requested"


def make_balance_plan(counts: pd.DataFrame, settings: BalanceSettings) -> BalancePlan:
    """Decide the remedy for imbalance.

    Args:
        counts: Images per class and split (see :func:`class_counts`); every class in it
            has at least one training image (ingestion drops the others).
        settings: The strategy and the remedies' settings.

    Returns:
        The plan.

    Raises:
        ValueError: If a class has no training image.
    """
    classes = counts["label"].tolist()
    train = counts["train"].to_numpy().astype(np.int64)
    empty = [c for c, n in zip(classes, train, strict=True) if n == 0]
    if empty:
        raise ValueError(f"class_balance: classes {empty} have no training images; add some "
                         "or remove their folders")
    ratio = imbalance_ratio(train)
    components, reason = resolve_strategy(settings.strategies, ratio,
                                          settings.min_imbalance_ratio)
    parts = {BALANCE_PARTS[name]: name for name in components}
    prior = train / train.sum()
    focal = "loss" in parts
    return BalancePlan(
        strategy="+".join(components) or "none",
        requested=settings.strategies,
        components=components,
        reason=reason,
        classes=tuple(classes),
        train_counts=tuple(int(n) for n in train),
        imbalance_ratio=ratio,
        sampler=_sampler_plan(parts.get("sampler"), train, settings.resample_ratio),
        class_weights=_weights_plan(parts.get("class weights"), train, settings),
        loss=LossPlan(name="focal" if focal else None,
                      options={"gamma": settings.focal_gamma} if focal else {},
                      logit_adjustment_tau=(settings.logit_adjustment_tau
                                            if "logit adjustment" in parts else None),
                      log_prior=tuple(np.log(prior).round(8).tolist())),
        crt=(CrtPlan(epochs=settings.crt_epochs, lr=settings.crt_lr,
                     sampler=_sampler_plan("class_balanced_sampler", train, 1.0))
             if "classifier re-training" in parts else None),
    )


def _sampler_plan(name: str | None, train: np.ndarray, ratio: float) -> SamplerPlan | None:
    """The plan of sampler ``name`` of :data:`SAMPLERS` for these class sizes, or None."""
    return None if name is None else SAMPLERS[name].plan(name, train, ratio)


def _weights_plan(name: str | None, train: np.ndarray,
                  settings: BalanceSettings) -> ClassWeightsPlan | None:
    if name is None:
        return None
    values = (effective_number_weights(train, settings.beta)
              if settings.class_weights == "effective_number"
              else inverse_frequency_weights(train))
    return ClassWeightsPlan(kind=settings.class_weights, beta=settings.beta,
                            values=tuple(values.round(6).tolist()),
                            # drw: the weights are deferred to the last epochs (Cao et al.).
                            start_fraction=settings.drw_start_fraction if name == "drw" else 0.0)
