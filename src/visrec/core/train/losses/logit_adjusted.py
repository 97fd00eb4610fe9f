"""Logit adjustment (Menon et al. 2021): the log prior added to the logits in training."""

from __future__ import annotations

import torch
from torch import nn


class LogitAdjustedLoss(nn.Module):
    """Adds fixed offsets to the logits before ``base`` (Menon et al. 2021).

    With offsets ``tau * log(prior)`` the model learns logits whose argmax suits a
    balanced test set; prediction uses the plain logits.

    Args:
        base: The loss applied to the adjusted logits.
        offsets: One offset per class.
    """

    offsets: torch.Tensor

    def __init__(self, base: nn.Module, offsets: torch.Tensor) -> None:
        super().__init__()
        self.base = base
        self.register_buffer("offsets", offsets)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``base(logits + offsets, target)``."""
        return self.base(logits + self.offsets, target)
