"""The recipe every training run shares (``training``, ``metric_learning``): model, epochs,
batch, optimizer, schedule, mixed precision, EMA, SWA, checkpoints and devices; and its
conversion into the core's :class:`~visrec.core.train.FitConfig` and launch settings.

Learning rates are per 256 images here and scaled linearly to the global batch (Goyal et
al. 2017) when they become the core's types.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

import torch
from pydantic import Field, field_validator, model_validator

from visrec.core.train import (
    EmaSpec,
    FitConfig,
    LaunchSpec,
    OptimizerSpec,
    ScheduleSpec,
    SwaSpec,
    resolve_channels_last,
    resolve_devices,
    resolve_precision,
    scaled_lr,
    swa_start_epoch,
)
from visrec.params.base import Params, check_architecture
from visrec.params.recipe import DistributedParams, EmaParams, ScheduleParams, SwaParams


class RunParams(Params):
    """The training recipe a block shares with every other training block."""

    model: str = Field(description="any timm architecture name (timm.list_models())")
    pretrained: bool = Field(description="timm's pretrained weights of the model from the "
                                         "Hugging Face hub (cached; offline once cached)")
    pretrained_path: str | None = Field(description="local .safetensors or timm checkpoint; "
                                                    "null: from scratch")
    freeze_backbone_epochs: int = Field(ge=0, description="first epochs train only the "
                                                          "classifier (fine-tuning)")
    epochs: int = Field(ge=1, description="epochs of the run, SWA epochs included")
    batch_size: int = Field(ge=1, description="global: split over the devices")
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
    schedule: ScheduleParams
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
    def _consistent_run(self) -> Self:
        if self.pretrained:
            if self.pretrained_path is not None:
                raise ValueError(f"{self.key}.pretrained = true and {self.key}.pretrained_path "
                                 f"= {self.pretrained_path!r}: give one source of weights")
            from visrec.core.models.hub import check_hub_weights  # noqa: PLC0415

            check_hub_weights(self.model, f"{self.key}.pretrained")
        if isinstance(self.devices, int) and self.batch_size % self.devices:
            raise ValueError(f"{self.key}.batch_size = {self.batch_size} is the global batch: "
                             f"give a multiple of {self.key}.devices = {self.devices}")
        if self.freeze_backbone_epochs >= self.epochs:
            raise ValueError(f"{self.key}.freeze_backbone_epochs = "
                             f"{self.freeze_backbone_epochs}: must be below {self.key}.epochs "
                             f"= {self.epochs}")
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

    def launch_spec(self, device: torch.device) -> LaunchSpec:
        """Processes and rendezvous of the run (torchrun's options)."""
        dist = self.distributed
        return LaunchSpec(nproc_per_node=resolve_devices(self.devices, device),
                          nnodes=dist.nnodes, rdzv_endpoint=dist.rdzv_endpoint,
                          rdzv_backend=dist.rdzv_backend, run_id=dist.run_id,
                          max_restarts=dist.max_restarts)

