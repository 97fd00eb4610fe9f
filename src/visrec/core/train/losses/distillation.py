"""Knowledge distillation (Hinton et al. 2015): the student matches the teacher's softened
probabilities."""

from __future__ import annotations

import torch
from torch.nn import functional as F


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
