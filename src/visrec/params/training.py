"""Parameters of the ``training`` stage, and their conversion into the core's run types.

Learning rates are per 256 images here and scaled linearly to the global batch (Goyal et
al. 2017) when they become the core's :class:`~visrec.core.train.FitConfig`.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import pandas as pd
import torch
from pydantic import Field, model_validator

from visrec.core.augment import AugmentationSpec, MixSpec
from visrec.core.balance import BalancePlan
from visrec.core.data import ImageCache, IngestionReport
from visrec.core.models import ModelInputs
from visrec.core.train import (
    ClassificationTask,
    DataSpec,
    DistillSpec,
    FitConfig,
    LossSpec,
    ModelSpec,
    OptimizerSpec,
    ScheduleSpec,
    TrainingJob,
    backend_for,
    loss_spec,
    make_data_spec,
    make_training_job,
    scaled_lr,
)
from visrec.params.recipe import DistillationParams, LossParams, MixupParams
from visrec.params.run import RunParams

logger = logging.getLogger(__name__)


class TrainingParams(RunParams):
    """Model, recipe, SWA, checkpoints and devices for ``training`` (learning rates per 256
    images, scaled linearly to the global batch: Goyal et al. 2017)."""

    key: ClassVar[str] = "training"
    label_smoothing: float = Field(ge=0.0, lt=1.0, description="share of the target spread "
                                                               "over the classes")
    loss: LossParams
    mixup: MixupParams
    distillation: DistillationParams

    @model_validator(mode="after")
    def _consistent(self) -> TrainingParams:
        if self.mixup.enabled and self.batch_size % 2:
            raise ValueError(f"training.batch_size = {self.batch_size}: MixUp/CutMix pair the "
                             "images of a batch; give an even batch size")
        return self

    def _mix(self, spec: AugmentationSpec) -> MixSpec | None:
        """Batch mixing: the augmentation policy's mixup/cutmix, else ``training.mixup``."""
        policy_mix = spec.mix()
        if policy_mix is not None:
            if self.mixup.enabled:
                logger.warning("augmentation policy %r mixes batches: training.mixup is "
                               "ignored", spec.policy)
            return policy_mix
        mix = self.mixup
        return MixSpec(mixup_alpha=mix.mixup_alpha, cutmix_alpha=mix.cutmix_alpha,
                       prob=mix.prob, switch_prob=mix.switch_prob) if mix.enabled else None

    def classification_task(self, plan: BalancePlan, spec: AugmentationSpec, num_classes: int,
                            channels: int) -> ClassificationTask:
        """The task of the run: the loss of the balance plan and ``training.loss``, the
        policy's batch mixing and AugMix consistency loss, and distillation."""
        distill = self.distillation
        return ClassificationTask(
            num_classes=num_classes,
            loss=loss_spec(plan, self.loss.name, self.loss.options, self.label_smoothing,
                           self.epochs),
            mix=self._mix(spec), jsd_weight=spec.jsd_weight,
            distill=None if distill.teacher_path is None else DistillSpec(
                teacher_path=distill.teacher_path, teacher_architecture=distill.teacher_model,
                temperature=distill.temperature, weight=distill.weight),
            in_chans=channels)

    def crt_recipe(self, plan: BalancePlan, num_classes: int,
                   seed: int) -> tuple[FitConfig, ClassificationTask] | None:
        """The classifier re-training recipe of the plan, or None: SGD with a cosine decay
        and plain cross-entropy, since the class-balanced batches balance the classes."""
        if plan.crt is None:
            return None
        lr = scaled_lr(plan.crt.lr, self.batch_size)
        config = FitConfig(epochs=plan.crt.epochs,
                           optimizer=OptimizerSpec(lr=lr, momentum=self.momentum,
                                                   weight_decay=self.weight_decay),
                           schedule=ScheduleSpec(name="cosine", min_lr=lr / 1000), seed=seed)
        task = ClassificationTask(num_classes=num_classes,
                                  loss=LossSpec(label_smoothing=self.label_smoothing))
        return config, task

    def model_spec(self, report: IngestionReport) -> ModelSpec:
        """The classifier of the run: ``training.model`` with a head per class."""
        return ModelSpec(architecture=self.model, num_outputs=len(report.classes),
                         channels=report.channels, pretrained_path=self.pretrained_path,
                         pretrained=self.pretrained, zero_gamma=self.zero_gamma)

    def data(self, manifest: pd.DataFrame, cache: ImageCache, report: IngestionReport,
             plan: BalancePlan, spec: AugmentationSpec, inputs: ModelInputs) -> DataSpec:
        """The images of the run, read and augmented, in batches of ``batch_size``."""
        return make_data_spec(manifest, cache, report, plan, spec, inputs, self.batch_size,
                              self.num_workers)

    def job(self, manifest: pd.DataFrame, cache: ImageCache, report: IngestionReport,
            plan: BalancePlan, spec: AugmentationSpec, inputs: ModelInputs, seed: int,
            device: torch.device) -> TrainingJob:
        """The training run of these parameters on the ingested images, as data."""
        return make_training_job(
            manifest, cache, report, plan, spec, inputs, model=self.model_spec(report),
            config=self.fit_config(seed, device),
            task=self.classification_task(plan, spec, len(report.classes), report.channels),
            batch_size=self.batch_size, num_workers=self.num_workers, device=device,
            launch=self.launch_spec(device),
            backend=backend_for(device, self.distributed.backend),
            sync_bn=self.distributed.sync_bn,
            settings=self.model_dump(exclude={"resume", "num_workers", "device"}))
