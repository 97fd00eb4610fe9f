"""Training criteria: cross-entropy or focal loss, class weights, logit adjustment.

Each part is independent: :func:`make_criterion` stacks what a :class:`LossSpec` asks
for. Targets may be class indices or soft targets (rows summing to 1), as mixing
augmentations produce.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class LossSpec:
    """The training criterion.

    Attributes:
        label_smoothing: Share of the target spread evenly over the classes.
        focal_gamma: Focal loss exponent, or None for cross-entropy.
        logit_offsets: Added to the logits in training only (``tau * log prior``), or None.
        class_weights: Loss weight per class, or None.
        weights_from_epoch: 0-based epoch from which ``class_weights`` apply (deferred
            re-weighting); before it the loss is unweighted.
    """

    label_smoothing: float = 0.0
    focal_gamma: float | None = None
    logit_offsets: tuple[float, ...] | None = None
    class_weights: tuple[float, ...] | None = None
    weights_from_epoch: int = 0


def _soft_targets(target: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    if target.ndim == 2:
        return target.float()
    one_hot = F.one_hot(target, num_classes).float()
    return one_hot * (1.0 - smoothing) + smoothing / num_classes


class FocalLoss(nn.Module):
    """Softmax focal loss ``-sum_k q_k (1 - p_k)^gamma log p_k`` (Lin et al. 2017).

    With ``gamma = 0``, no smoothing and hard targets it equals cross-entropy; class
    weights weigh each row by its target class and average by the total weight, as
    ``nn.CrossEntropyLoss`` does.

    Args:
        gamma: Focusing exponent: well-classified rows (high ``p``) count less.
        weight: Loss weight per class, or None.
        label_smoothing: Share of the target spread evenly over the classes.
    """

    def __init__(self, gamma: float, weight: torch.Tensor | None = None,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean (or class-weighted mean) focal loss of the batch."""
        log_p = F.log_softmax(logits.float(), dim=1)
        soft = _soft_targets(target, logits.shape[1], self.label_smoothing)
        per_row = -(soft * (1.0 - log_p.exp()).pow(self.gamma) * log_p).sum(dim=1)
        if self.weight is None:
            return per_row.mean()
        row_weight = soft @ self.weight if target.ndim == 2 else self.weight[target]
        return (row_weight * per_row).sum() / row_weight.sum()


class LogitAdjustedLoss(nn.Module):
    """Adds fixed offsets to the logits before ``base`` (Menon et al. 2021).

    With offsets ``tau * log(prior)`` the model learns logits whose argmax suits a
    balanced test set; prediction uses the plain logits.

    Args:
        base: The loss applied to the adjusted logits.
        offsets: One offset per class.
    """

    def __init__(self, base: nn.Module, offsets: torch.Tensor) -> None:
        super().__init__()
        self.base = base
        self.register_buffer("offsets", offsets)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``base(logits + offsets, target)``."""
        return self.base(logits + self.offsets, target)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """Hinton et al. (2015): ``T^2 * KL(softmax(teacher / T) || softmax(student / T))``.

    The ``T^2`` keeps the gradient scale of the soft term independent of the temperature.

    Args:
        student_logits: Logits being trained, N x K.
        teacher_logits: The teacher's logits for the same images.
        temperature: Softening temperature ``T``.
    """
    return F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.log_softmax(teacher_logits / temperature, dim=1),
                    reduction="batchmean", log_target=True) * temperature**2


class JsdLoss(nn.Module):
    """AugMix's loss (Hendrycks et al. 2020): the base loss on the clean images plus
    ``weight`` x the Jensen-Shannon divergence between the views' predictions.

    The logits come as ``splits`` consecutive batches, ``[clean; view 1; view 2]``, and
    the targets as one batch. timm's ``JsdCrossEntropy`` computes the same with plain
    cross-entropy as the base; this one wraps any base, so it composes with the class
    balance plan's losses (focal, class weights, logit adjustment).

    Args:
        base: The loss on the clean images' logits.
        weight: Weight of the consistency term (12 in the paper).
        splits: Views per image.
    """

    def __init__(self, base: nn.Module, weight: float = 12.0, splits: int = 3) -> None:
        super().__init__()
        self.base, self.weight, self.splits = base, weight, splits

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Base loss of the first split plus the weighted divergence of all splits."""
        views = logits.chunk(self.splits)
        probabilities = [F.softmax(view, dim=1) for view in views]
        mixture = torch.clamp(torch.stack(probabilities).mean(dim=0), 1e-7, 1).log()
        divergence = sum(F.kl_div(mixture, p, reduction="batchmean")
                         for p in probabilities) / self.splits
        return self.base(views[0], target) + self.weight * divergence


def make_criterion(spec: LossSpec, epoch: int) -> nn.Module:
    """The criterion of ``epoch`` (0-based): class weights start at ``weights_from_epoch``.

    Args:
        spec: What the criterion is made of.
        epoch: The epoch it is for.
    """
    weight = None
    if spec.class_weights is not None and epoch >= spec.weights_from_epoch:
        weight = torch.tensor(spec.class_weights, dtype=torch.float32)
    if spec.focal_gamma is None:
        criterion: nn.Module = nn.CrossEntropyLoss(weight=weight,
                                                   label_smoothing=spec.label_smoothing)
    else:
        criterion = FocalLoss(spec.focal_gamma, weight, spec.label_smoothing)
    if spec.logit_offsets is not None:
        criterion = LogitAdjustedLoss(criterion,
                                      torch.tensor(spec.logit_offsets, dtype=torch.float32))
    return criterion


def loss_spec(loss_plan: dict, weights_plan: dict | None, label_smoothing: float,
              epochs: int) -> LossSpec:
    """The :class:`LossSpec` of a balance plan's ``loss`` and ``class_weights`` parts.

    Args:
        loss_plan: ``focal_gamma``, ``logit_adjustment_tau`` (each None when off) and
            ``log_prior`` (log of the training class frequencies).
        weights_plan: ``values`` and ``start_fraction`` (of ``epochs``), or None.
        label_smoothing: From the training recipe.
        epochs: Epochs of training, to place deferred weights.
    """
    tau = loss_plan.get("logit_adjustment_tau")
    offsets = None if tau is None else tuple(tau * v for v in loss_plan["log_prior"])
    weights, start = None, 0
    if weights_plan is not None:
        weights = tuple(weights_plan["values"])
        start = min(epochs - 1, round(epochs * weights_plan["start_fraction"]))
    return LossSpec(label_smoothing=label_smoothing, focal_gamma=loss_plan.get("focal_gamma"),
                    logit_offsets=offsets, class_weights=weights, weights_from_epoch=start)
