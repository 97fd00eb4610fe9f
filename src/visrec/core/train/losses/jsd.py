"""AugMix's Jensen-Shannon consistency loss (Hendrycks et al. 2020) around any base loss."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


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
