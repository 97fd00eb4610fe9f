"""Parameters of the ``training`` stage, and their conversion into the core's run types.

Learning rates are per 256 images here and scaled linearly to the global batch (Goyal et
al. 2017) when they become the core's :class:`~visrec.core.train.FitConfig`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar, Literal

import pandas as pd
import torch
from pydantic import Field, field_validator, model_validator

from visrec.core.augment import AugmentationSpec, MixSpec
from visrec.core.balance import BalancePlan
from visrec.core.data import ImageCache, IngestionReport
from visrec.core.models import ModelInputs
from visrec.core.train import (
    ClassificationTask,
    DataSpec,
    DistillSpec,
    EmaSpec,
    FitConfig,
    LaunchSpec,
    LossSpec,
    ModelSpec,
    OptimizerSpec,
    ScheduleSpec,
    SwaSpec,
    TrainingJob,
    backend_for,
    loss_spec,
    make_data_spec,
    make_training_job,
    resolve_channels_last,
    resolve_devices,
    resolve_precision,
    scaled_lr,
    swa_start_epoch,
)
from visrec.params.base import Params, check_architecture
from visrec.params.recipe import (
    DistillationParams,
    DistributedParams,
    EmaParams,
    LossParams,
    MixupParams,
    ScheduleParams,
    SwaParams,
)

logger = logging.getLogger(__name__)


class TrainingParams(Params):
    """Model, recipe, SWA, checkpoints and devices for ``training`` (learning rates per 256
    images, scaled linearly to the global batch: Goyal et al. 2017)."""

    key: ClassVar[str] = "training"
    model: str = Field(description="any timm architecture name (timm.list_models())")
    pretrained_path: str | None = Field(description="local .safetensors or timm checkpoint; "
                                                    "null: from scratch")
    freeze_backbone_epochs: int = Field(ge=0, description="first epochs train only the "
                                                          "classifier (fine-tuning)")
    epochs: int = Field(ge=1, description="epochs of the run, SWA epochs included")
    batch_size: int = Field(ge=1, description="global: split over training.devices")
    image_size: int | None = Field(ge=8, le=1024, description="input side, pixels; null: "
                                                              "the model's own")
    optimizer: Literal["sgd", "adamw", "adam"] = Field(description="sgd: Nesterov momentum")
    lr: float = Field(gt=0.0, le=10.0, description="peak learning rate per 256 images")
    momentum: float = Field(ge=0.0, lt=1.0, description="SGD momentum; Adam beta1")
    weight_decay: float = Field(ge=0.0, description="L2 (SGD, Adam) or decoupled (AdamW)")
    no_bias_decay: bool = Field(description="no weight decay on biases and norm layers "
                                            "(He et al. 2019)")
    zero_gamma: bool = Field(description="last BatchNorm of each residual block starts at 0 "
                                         "(He et al. 2019)")
    label_smoothing: float = Field(ge=0.0, lt=1.0, description="share of the target spread "
                                                               "over the classes")
    loss: LossParams
    schedule: ScheduleParams
    mixup: MixupParams
    distillation: DistillationParams
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        description="auto: bf16 (or fp16) autocast on CUDA, fp32 on the CPU")
    channels_last: Literal["auto", True, False] = Field(
        description="NHWC memory layout; auto: on (faster convolutions on GPU and CPU)")
    compile: bool = Field(description="torch.compile the model")
    grad_clip: float | None = Field(gt=0.0, description="max gradient norm; null: off")
    ema: EmaParams
    swa: SwaParams
    resume: Literal["auto", "never"] = Field(
        description="auto: continue from the last checkpoint of the same settings, data and "
                    "code")
    device: Literal["auto", "cpu", "cuda"] = Field(description="auto: CUDA when a GPU is "
                                                               "visible")
    devices: int | Literal["auto"] = Field(
        description="training processes (DDP through torch's elastic launcher); auto: one "
                    "per GPU, else 1")
    num_workers: int | None = Field(ge=0, description="DataLoader processes per training "
                                                      "process; null: by device and cores")
    distributed: DistributedParams

    @field_validator("model")
    @classmethod
    def _known_architecture(cls, value: str) -> str:
        return check_architecture(value)

    @field_validator("devices")
    @classmethod
    def _positive_devices(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("give a number of worker processes >= 1, or auto")
        return value

    @field_validator("pretrained_path")
    @classmethod
    def _weights_file_exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(
                "no such file; give a local .safetensors or timm checkpoint (.pth, .bin)"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainingParams:
        if self.mixup.enabled and self.batch_size % 2:
            raise ValueError(f"training.batch_size = {self.batch_size}: MixUp/CutMix pair the "
                             "images of a batch; give an even batch size")
        if isinstance(self.devices, int) and self.batch_size % self.devices:
            raise ValueError(f"training.batch_size = {self.batch_size} is the global batch: "
                             f"give a multiple of training.devices = {self.devices}")
        if self.freeze_backbone_epochs >= self.epochs:
            raise ValueError(f"training.freeze_backbone_epochs = {self.freeze_backbone_epochs}"
                             f": must be below training.epochs = {self.epochs}")
        return self

    def fit_config(self, seed: int, device: torch.device) -> FitConfig:
        """The recipe, with learning rates scaled linearly from 256 images to the batch."""
        swa, schedule = self.swa, self.schedule

        def lr(per_256: float) -> float:
            return scaled_lr(per_256, self.batch_size)

        return FitConfig(
            epochs=self.epochs,
            optimizer=OptimizerSpec(name=self.optimizer, lr=lr(self.lr),
                                    momentum=self.momentum, weight_decay=self.weight_decay,
                                    no_bias_decay=self.no_bias_decay),
            schedule=ScheduleSpec(name=schedule.name, warmup_epochs=schedule.warmup_epochs,
                                  min_lr=lr(schedule.min_lr), step_epochs=schedule.step_epochs,
                                  step_rate=schedule.step_rate,
                                  cycle_epochs=schedule.cycle_epochs),
            swa=SwaSpec(start=swa.start_epoch - 1 if swa.start_epoch is not None
                        else swa_start_epoch(self.epochs, swa.start_fraction),
                        lr=lr(swa.lr), schedule=swa.schedule, anneal_epochs=swa.anneal_epochs,
                        cycle_epochs=swa.cycle_epochs, min_lr=lr(swa.min_lr))
            if swa.enabled else None,
            ema=EmaSpec(decay=self.ema.decay, warmup=self.ema.warmup)
            if self.ema.enabled else None,
            precision=resolve_precision(self.precision, device),
            channels_last=resolve_channels_last(self.channels_last),
            compile=self.compile, grad_clip=self.grad_clip,
            freeze_epochs=self.freeze_backbone_epochs, seed=seed)

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

    def launch_spec(self, device: torch.device) -> LaunchSpec:
        """Processes and rendezvous of the run (torchrun's options)."""
        dist = self.distributed
        return LaunchSpec(nproc_per_node=resolve_devices(self.devices, device),
                          nnodes=dist.nnodes, rdzv_endpoint=dist.rdzv_endpoint,
                          rdzv_backend=dist.rdzv_backend, run_id=dist.run_id,
                          max_restarts=dist.max_restarts)

    def model_spec(self, report: IngestionReport) -> ModelSpec:
        """The classifier of the run: ``training.model`` with a head per class."""
        return ModelSpec(architecture=self.model, num_outputs=len(report.classes),
                         channels=report.channels, pretrained_path=self.pretrained_path,
                         zero_gamma=self.zero_gamma)

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
