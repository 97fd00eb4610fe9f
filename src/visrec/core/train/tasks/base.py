"""What a training run learns, as the training loop sees it.

The loop (:func:`visrec.core.train.fit`) owns everything that does not depend on what is
learnt: schedules, mixed precision, channels_last, SWA, EMA, checkpoints and resume,
several processes. A :class:`Task` owns the rest: the loss of a batch and what
validation measures. Classification is one task; a metric-learning task plugs in the
same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader


@dataclass
class TaskStep:
    """One batch's loss, and the sums of the task's running training metrics.

    Attributes:
        loss: The loss to back-propagate (a scalar tensor).
        count: Images the loss and the sums are over.
        sums: Per metric, the sum over those images (correct predictions for ``top1``);
            the loop reports ``train_<name>`` as the sum over the epoch's images.
    """

    loss: torch.Tensor
    count: int
    sums: dict[str, torch.Tensor | float] = field(default_factory=dict)


class Task(ABC):
    """The loss and the validation of one kind of model.

    A task object is data until :meth:`setup` (it is pickled to each training process);
    :meth:`setup` makes what needs the device and the model (a teacher, a criterion).

    Attributes:
        score: The validation metric (a key of :meth:`validate`) that compares weights.
        higher_is_better: Whether a larger ``score`` is better.
    """

    score: ClassVar[str]
    higher_is_better: ClassVar[bool] = True

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """The module the loop trains, made from the run's model before anything else (a
        wrapper that also holds the loss's own parameters); the model itself by default."""
        return model

    def product(self, trained: nn.Module) -> nn.Module:
        """What a weight set keeps of a module :meth:`prepare_model` made (the model
        without the loss's parameters); the module itself by default."""
        return trained

    def setup(self, model: nn.Module,  # noqa: B027 - an optional hook
              device: torch.device, channels_last: bool) -> None:
        """Prepare for training ``model`` on ``device`` (before the first epoch); nothing
        by default."""

    def start_epoch(self, epoch: int,  # noqa: B027 - an optional hook
                    device: torch.device) -> None:
        """Prepare for epoch ``epoch`` (0-based), e.g. a criterion whose weights change;
        nothing by default."""

    @abstractmethod
    def step(self, model: nn.Module, images: torch.Tensor,
             targets: torch.Tensor) -> TaskStep:
        """The loss of one training batch (the loop runs this under its autocast).

        Args:
            model: The model being trained, in training mode.
            images: The batch, on the device and transformed.
            targets: The batch's targets, on the device.
        """

    @abstractmethod
    def validate(self, model: nn.Module, loader: DataLoader,
                 device: torch.device) -> dict[str, float]:
        """Validation figures of ``model`` on ``loader`` (``loss`` and :attr:`score` among
        them)."""

    def better(self, first: float, second: float) -> bool:
        """Whether score ``first`` is better than ``second``."""
        return first > second if self.higher_is_better else first < second


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a compiled and/or DDP wrapper."""
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
