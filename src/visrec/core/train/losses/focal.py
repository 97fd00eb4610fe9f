"""Focal loss (Lin et al. 2017): well-classified images count less."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def soft_targets(target: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """Class indices as smoothed one-hot rows; soft targets (rows summing to 1) as they are."""
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
        weight: Loss weight per class, or None.
        label_smoothing: Share of the target spread evenly over the classes.
        gamma: Focusing exponent: well-classified rows (high ``p``) count less.
    """

    weight: torch.Tensor | None

    def __init__(self, weight: torch.Tensor | None = None, label_smoothing: float = 0.0,
                 gamma: float = 2.0) -> None:
        super().__init__()
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean (or class-weighted mean) focal loss of the batch."""
        log_p = F.log_softmax(logits.float(), dim=1)
        soft = soft_targets(target, logits.shape[1], self.label_smoothing)
        per_row = -(soft * (1.0 - log_p.exp()).pow(self.gamma) * log_p).sum(dim=1)
        if self.weight is None:
            return per_row.mean()
        row_weight = soft @ self.weight if target.ndim == 2 else self.weight[target]
        return (row_weight * per_row).sum() / row_weight.sum()
