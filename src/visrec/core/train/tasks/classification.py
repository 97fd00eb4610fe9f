"""Classification: cross-entropy (or any loss of the registry) on class labels, with batch
MixUp/CutMix, AugMix's consistency loss and distillation from a teacher; validated by
loss, top-1 and balanced accuracy."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader

from visrec.core.augment import MixSpec
from visrec.core.evaluate import predict_logits, validation_metrics
from visrec.core.models import load_teacher
from visrec.core.train.losses import JsdLoss, LossSpec, distillation_loss, make_criterion
from visrec.core.train.tasks.base import Task, TaskStep


@dataclass(frozen=True)
class DistillSpec:
    """Knowledge distillation (Hinton et al. 2015): ``(1 - weight) * loss + weight * KD``.

    Attributes:
        teacher_path: A weight-set folder, or a safetensors/timm weights file.
        teacher_architecture: The file's timm architecture (a folder names its own).
        temperature: Softening temperature of both distributions.
        weight: Share of the distillation term.
    """

    teacher_path: str
    teacher_architecture: str | None = None
    temperature: float = 4.0
    weight: float = 0.5


@dataclass
class ClassificationTask(Task):
    """Learning ``num_classes`` classes from class-index targets.

    Attributes:
        num_classes: Classes of the head.
        loss: The criterion (a loss of the registry, label smoothing, class weights,
            logit adjustment).
        mix: Batch MixUp / CutMix (timm ``Mixup``; the targets then carry the label
            smoothing), or None.
        jsd_weight: AugMix's consistency-loss weight when batches hold its three views
            (clean, augmented, augmented), or None.
        distill: Distillation from a teacher, or None.
        in_chans: Input channels, for the teacher.
    """

    score: ClassVar[str] = "balanced_accuracy"

    num_classes: int
    loss: LossSpec = field(default_factory=LossSpec)
    mix: MixSpec | None = None
    jsd_weight: float | None = None
    distill: DistillSpec | None = None
    in_chans: int = 3
    _criterion: nn.Module | None = field(default=None, init=False, repr=False, compare=False)
    _mixup: Any = field(default=None, init=False, repr=False, compare=False)
    _teacher: nn.Module | None = field(default=None, init=False, repr=False, compare=False)

    def setup(self, model: nn.Module, device: torch.device, channels_last: bool) -> None:
        """Make the batch mixer and load the teacher onto ``device``."""
        if self.mix is not None:
            from timm.data import Mixup  # noqa: PLC0415 - timm imports in seconds

            self._mixup = Mixup(mixup_alpha=self.mix.mixup_alpha,
                                cutmix_alpha=self.mix.cutmix_alpha, prob=self.mix.prob,
                                switch_prob=self.mix.switch_prob,
                                label_smoothing=self.loss.label_smoothing,
                                num_classes=self.num_classes)
        if self.distill is not None:
            teacher = load_teacher(self.distill.teacher_path,
                                   self.distill.teacher_architecture, self.num_classes,
                                   self.in_chans)
            teacher.to(device).eval()
            if channels_last:
                teacher.to(memory_format=torch.channels_last)
            self._teacher = teacher

    def start_epoch(self, epoch: int, device: torch.device) -> None:
        """The criterion of ``epoch``; with MixUp the targets already carry the smoothing."""
        spec = self.loss if self.mix is None else replace(self.loss, label_smoothing=0.0)
        criterion = make_criterion(spec, epoch)
        if self.jsd_weight is not None:
            criterion = JsdLoss(criterion, self.jsd_weight)
        self._criterion = criterion.to(device)

    def step(self, model: nn.Module, images: torch.Tensor,
             targets: torch.Tensor) -> TaskStep:
        """Mix the batch, run the model (and the teacher); the loss and correct top-1."""
        if self._criterion is None:
            raise RuntimeError("ClassificationTask.start_epoch was not called")
        if self._mixup is not None:
            if images.shape[0] % 2 == 0:
                images, targets = self._mixup(images, targets)
            else:  # timm pairs images: an odd batch only gets the smoothed one-hot targets
                from timm.data.mixup import mixup_target  # noqa: PLC0415

                targets = mixup_target(targets, self.num_classes, 1.0,
                                       self._mixup.label_smoothing)
        logits = model(images)
        loss = self._criterion(logits.float(), targets)
        if self._teacher is not None and self.distill is not None:
            with torch.no_grad():
                teacher_logits = self._teacher(images)
            weight = self.distill.weight
            loss = (1 - weight) * loss + weight * distillation_loss(
                logits.float(), teacher_logits.float(), self.distill.temperature)
        labels = targets.argmax(dim=1) if targets.ndim == 2 else targets
        logits = logits[:labels.shape[0]]  # AugMix views: the clean images count
        return TaskStep(loss, labels.shape[0],
                        {"top1": (logits.argmax(dim=1) == labels).sum()})

    def validate(self, model: nn.Module, loader: DataLoader,
                 device: torch.device) -> dict[str, float]:
        """Cross-entropy, top-1 and balanced accuracy of ``model`` on ``loader``."""
        return validation_metrics(*predict_logits(model, loader, device))
