"""Class-distribution analysis and the plan that counters imbalance.

The plan is data (JSON): which sampler draws the training rows, which class weights
and loss training uses, whether the classifier is re-trained afterwards, and why.
Training builds the parts from it (``core.samplers``, ``core.losses``); each part is
independent of the others, so that a sampler combines with any loss.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from scipy.stats import entropy
from sklearn.utils.class_weight import compute_class_weight

from visrec.params import BALANCE_PARTS, ClassBalanceParams

logger = logging.getLogger(__name__)

GROUPS = ("many", "medium", "few")
# Sampling probability of a class is proportional to n_c ** q (Mahajan et al. 2018; Kang et
# al. 2020): q = 1 is plain shuffling, 0.5 square-root sampling, 0 class-balanced sampling.
SAMPLER_POWER = {"sqrt_sampler": 0.5, "class_balanced_sampler": 0.0}
# What `auto` applies when the imbalance is large enough: training-time logit adjustment is
# cheap, changes neither the data order nor the epoch length, and is consistent for the
# balanced error (Menon et al. 2021); re-training the classifier on class-balanced batches
# afterwards (Kang et al. 2020) then corrects what is left in the last layer, for a few
# epochs of the head alone. Oversampling can score as well on small sets, but lengthens
# every epoch by up to K * n_max / N (more than 10x on ImageNet-LT).
AUTO_REMEDY = ("logit_adjustment", "crt")


def class_counts(manifest: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Images per class (rows, in class-index order) and split (columns).

    Args:
        manifest: The ingestion manifest.
        classes: Class names in class-index order.

    Returns:
        Integer table with columns ``label``, ``train``, ``val``, ``test``.
    """
    counts = (manifest.groupby(["label", "split"]).size().unstack("split")
              .reindex(index=classes, columns=["train", "val", "test"]).fillna(0).astype(int))
    return counts.rename_axis(columns=None).reset_index()


def imbalance_ratio(train_counts: np.ndarray) -> float:
    """Largest over smallest training class size (classes with no images ignored)."""
    present = train_counts[train_counts > 0]
    return float(present.max() / present.min())


def normalised_entropy(train_counts: np.ndarray) -> float:
    """Entropy of the class distribution over its maximum ``log K``: 1 is balanced.

    Classes with no image count in ``K`` (they make the distribution less even).
    """
    if len(train_counts) < 2:
        return 1.0
    return float(entropy(np.asarray(train_counts, dtype=np.float64)) / math.log(len(train_counts)))


def effective_numbers(train_counts: np.ndarray, beta: float) -> np.ndarray:
    """Effective number of samples ``(1 - beta^n) / (1 - beta)`` per class (Cui et al. 2019).

    It grows like ``n`` for small ``n`` and saturates at ``1 / (1 - beta)``: more images of
    one class overlap more. ``beta = 0`` gives 1 for every non-empty class.
    """
    counts = np.asarray(train_counts, dtype=np.float64)
    return -np.expm1(counts * math.log(beta)) / (1.0 - beta) if beta > 0 else np.minimum(counts, 1)


def inverse_frequency_weights(train_counts: np.ndarray) -> np.ndarray:
    """Per-class weights ``N / (K * n_c)`` (scikit-learn's "balanced"): 1 for balanced classes."""
    classes = np.arange(len(train_counts))
    return compute_class_weight("balanced", classes=classes,
                                y=np.repeat(classes, np.asarray(train_counts, dtype=np.int64)))


def effective_number_weights(train_counts: np.ndarray, beta: float) -> np.ndarray:
    """Class-balanced weights ``1 / E_n`` scaled to sum to the number of classes (Cui et al.)."""
    inverse = 1.0 / effective_numbers(train_counts, beta)
    return inverse * len(inverse) / inverse.sum()


def shot_groups(train_counts: np.ndarray, many: int, few: int) -> np.ndarray:
    """``many`` (more than ``many`` images), ``few`` (fewer than ``few``) or ``medium``."""
    counts = np.asarray(train_counts)
    return np.where(counts > many, "many", np.where(counts < few, "few", "medium")).astype(object)


def analyse_classes(counts: pd.DataFrame, beta: float, many: int,
                    few: int) -> tuple[pd.DataFrame, dict]:
    """The shape of the class distribution.

    Args:
        counts: Images per class and split (see :func:`class_counts`).
        beta: Effective-number parameter.
        many: Many-shot classes have more than this many training images.
        few: Few-shot classes have fewer than this many training images.

    Returns:
        ``(table, report)``: ``counts`` with ``effective_number`` and ``group`` columns; a
        JSON-friendly report (imbalance ratio, normalised entropy, groups, head and tail
        classes, warnings).
    """
    train = counts["train"].to_numpy()
    table = counts.assign(effective_number=effective_numbers(train, beta).round(4),
                          group=shot_groups(train, many, few))
    labels = table["label"].tolist()
    order = np.argsort(-train, kind="stable")
    report = {
        "num_classes": len(table),
        "train_images": int(train.sum()),
        "imbalance_ratio": imbalance_ratio(train),
        "normalised_entropy": round(normalised_entropy(train), 6),
        "beta": beta,
        "thresholds": {"many": many, "few": few},
        "head": {"label": labels[order[0]], "train": int(train[order[0]])},
        "tail": {"label": labels[order[-1]], "train": int(train[order[-1]])},
        "groups": {g: table.loc[table["group"] == g, "label"].tolist() for g in GROUPS},
        "group_train_images": {g: int(train[table["group"] == g].sum()) for g in GROUPS},
        "warnings": distribution_warnings(table),
    }
    return table, report


def distribution_warnings(counts: pd.DataFrame, shown: int = 10) -> list[str]:
    """What the user should know before training: classes too small to learn or to measure."""
    warnings = []
    single = counts.loc[counts["train"] == 1, "label"].tolist()
    if single:
        warnings.append(f"classes {class_list(single, shown)} have a single training image: they "
                        "are learnt from one example; add images or expect low recall")
    has_split = {s: counts[s].sum() > 0 for s in ("val", "test")}
    for split, present in has_split.items():
        missing = counts.loc[counts[split] == 0, "label"].tolist()
        if present and missing:
            warnings.append(f"classes {class_list(missing, shown)} have no {split} image: their "
                            f"{split} accuracy is not measured and they are left out of "
                            f"balanced accuracy on {split}")
    return warnings


def class_list(labels: list[str], shown: int = 10) -> str:
    """Class names for a message: the first ``shown`` of them, then how many more."""
    more = f" and {len(labels) - shown} more" if len(labels) > shown else ""
    return f"{labels[:shown]}{more}"


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
            "2020): strong on the tail without lengthening epochs (see the README's "
            "long-tail benchmark)")
    if requested == ("none",):
        return (), "none: requested; plain cross-entropy"
    return requested, f"{' + '.join(requested)}: requested"


def make_balance_plan(counts: pd.DataFrame, params: ClassBalanceParams) -> dict:
    """Decide the remedy for imbalance.

    Args:
        counts: Images per class and split (see :func:`class_counts`); every class in it
            has at least one training image (ingestion drops the others).
        params: The ``class_balance`` block.

    Returns:
        The plan: requested strategy, the applied ``components`` and the ``reason``;
        ``sampler`` (None, weighted with power ``q``, or over/under-sampling with
        per-class targets); ``class_weights`` (None or values and the fraction of the
        epochs after which they apply); ``loss`` (focal gamma and logit adjustment); and
        ``crt`` (None or the classifier re-training recipe).

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
    components, reason = resolve_strategy(params.strategies, ratio,
                                          params.auto.min_imbalance_ratio)
    parts = {BALANCE_PARTS[name]: name for name in components}
    prior = train / train.sum()
    return {
        "strategy": "+".join(components) or "none",
        "requested": list(params.strategies),
        "components": list(components),
        "reason": reason,
        "classes": classes,
        "train_counts": [int(n) for n in train],
        "imbalance_ratio": ratio,
        "sampler": _sampler_plan(parts.get("sampler"), train, params.resample.ratio),
        "class_weights": _weights_plan(parts.get("class weights"), train, params),
        "loss": {
            "focal_gamma": params.focal.gamma if "loss" in parts else None,
            "logit_adjustment_tau": (params.logit_adjustment.tau
                                     if "logit adjustment" in parts else None),
            "log_prior": np.log(prior).round(8).tolist(),
        },
        "crt": ({"epochs": params.crt.epochs, "lr": params.crt.lr,
                 "sampler": _sampler_plan("class_balanced_sampler", train, 1.0)}
                if "classifier re-training" in parts else None),
    }


def _sampler_plan(name: str | None, train: np.ndarray, ratio: float) -> dict | None:
    if name is None:
        return None
    if name in SAMPLER_POWER:
        q = SAMPLER_POWER[name]
        return {"kind": "weighted", "q": q,
                "class_probabilities": class_probabilities(train, q).round(8).tolist()}
    return {"kind": name, "ratio": ratio,
            "class_targets": resample_targets(train, name, ratio).tolist()}


def _weights_plan(name: str | None, train: np.ndarray, params: ClassBalanceParams
                  ) -> dict | None:
    if name is None:
        return None
    values = (effective_number_weights(train, params.beta)
              if params.class_weights == "effective_number" else inverse_frequency_weights(train))
    return {"kind": params.class_weights, "beta": params.beta, "values": values.round(6).tolist(),
            # drw: the weights are deferred to the last epochs (Cao et al. 2019).
            "start_fraction": params.drw.start_fraction if name == "drw" else 0.0}


def class_probabilities(train_counts: np.ndarray, q: float) -> np.ndarray:
    """Probability of drawing each class when a row's class is drawn proportionally to ``n^q``."""
    powered = np.asarray(train_counts, dtype=np.float64) ** q
    return powered / powered.sum()


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
