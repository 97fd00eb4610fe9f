"""The blocks nested in ``training``: loss, schedule, mixing, distillation, EMA, SWA and
processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from visrec.core.train import check_loss
from visrec.params.base import Params, check_architecture


class LossParams(Params):
    """The training loss (``training.loss``), by name from the registry."""

    key: ClassVar[str] = "training.loss"
    name: str = Field(description="a loss of visrec.core.train.losses.LOSSES: cross_entropy, "
                                  "focal, ... (class_balance.strategy focal sets focal)")
    options: dict[str, Any] = Field(description="keyword arguments of the loss besides "
                                                "weight and label_smoothing")

    @model_validator(mode="after")
    def _builds(self) -> LossParams:
        check_loss(self.name, self.options)
        return self


class ScheduleParams(Params):
    """Learning-rate schedule (``training.schedule``), stepped after every update."""

    key: ClassVar[str] = "training.schedule"
    name: Literal["cosine", "linear", "step", "cyclic", "onecycle", "constant"] = Field(
        description="cosine (Loshchilov & Hutter 2017), linear to zero (Li et al. "
        "2020), step, cyclic triangular (Smith 2017), onecycle (Smith 2018), constant")
    warmup_epochs: int = Field(
        ge=0, description="linear warmup from lr / 100 (Goyal et al. 2017); shortened to "
        "fit short runs, with a warning; onecycle warms up for this share of its run")
    min_lr: float = Field(ge=0.0, description="end of cosine/linear (SWA: its rate), cyclic "
                                              "low point; per 256 images")
    step_epochs: int = Field(ge=1, description="step: epochs between decays")
    step_rate: float = Field(gt=0.0, le=1.0, description="step: factor at each decay")
    cycle_epochs: float = Field(gt=0.0, description="cyclic: epochs of one up-down cycle")


class MixupParams(Params):
    """MixUp (Zhang et al. 2018) and CutMix (Yun et al. 2019) of whole batches (timm Mixup)."""

    key: ClassVar[str] = "training.mixup"
    mixup_alpha: float = Field(ge=0.0, description="Beta(alpha, alpha) mixing; 0: off")
    cutmix_alpha: float = Field(ge=0.0, description="Beta(alpha, alpha) box area; 0: off")
    prob: float = Field(ge=0.0, le=1.0, description="share of batches mixed")
    switch_prob: float = Field(ge=0.0, le=1.0,
                               description="with both on: share of mixed batches cut, not blended")

    @property
    def enabled(self) -> bool:
        """Whether any batch is mixed."""
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)


class DistillationParams(Params):
    """Knowledge distillation from a trained teacher (Hinton et al. 2015)."""

    key: ClassVar[str] = "training.distillation"
    teacher_path: str | None = Field(
        description="a visrec weight-set folder (model.safetensors + config.json), or a "
        "safetensors/timm checkpoint file with teacher_model; null: no distillation")
    teacher_model: str | None = Field(description="timm architecture of a teacher file")
    temperature: float = Field(gt=0.0, le=100.0, description="softmax temperature")
    weight: float = Field(ge=0.0, le=1.0, description="share of the distillation term")

    @field_validator("teacher_path")
    @classmethod
    def _teacher_exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).exists():
            raise ValueError("no such file or folder; give a trained weight set such as "
                             "data/06_models/classifier/swa, or a .safetensors file")
        return value

    @model_validator(mode="after")
    def _teacher_architecture(self) -> DistillationParams:
        path = None if self.teacher_path is None else Path(self.teacher_path)
        if path is not None and path.is_file() and self.teacher_model is None:
            raise ValueError(f"training.distillation.teacher_path = '{path}' is a file: set "
                             "training.distillation.teacher_model to its timm architecture")
        return self

    @field_validator("teacher_model")
    @classmethod
    def _known_teacher(cls, value: str | None) -> str | None:
        return None if value is None else check_architecture(value)


class EmaParams(Params):
    """Exponential moving average of the weights (timm ModelEmaV3), saved as ``ema``."""

    key: ClassVar[str] = "training.ema"
    enabled: bool = Field(description="keep an EMA of the weights, saved as ema")
    decay: float = Field(ge=0.0, lt=1.0, description="per update")
    warmup: bool = Field(description="lower decay in the first updates (timm use_warmup)")


class SwaParams(Params):
    """Stochastic Weight Averaging over the last epochs (Izmailov et al. 2018)."""

    key: ClassVar[str] = "training.swa"
    enabled: bool = Field(description="average the weights of the last epochs, saved as swa")
    start_fraction: float = Field(gt=0.0, lt=1.0, description="of epochs before SWA")
    start_epoch: int | None = Field(ge=1, description="1-based first SWA epoch; overrides "
                                                      "start_fraction")
    lr: float = Field(gt=0.0, description="SWA learning rate per 256 images")
    schedule: Literal["constant", "cyclic"] = Field(
        description="constant: SWALR; cyclic: lr to min_lr in each cycle, "
        "averaging at its end")
    anneal_epochs: int = Field(ge=0, description="constant: epochs to anneal into the rate")
    cycle_epochs: int = Field(ge=1, description="cyclic: epochs per cycle")
    min_lr: float = Field(ge=0.0, description="cyclic: lowest rate per 256 images")


class DistributedParams(Params):
    """Worker processes of ``training.devices`` > 1 (torch elastic launch, DDP)."""

    key: ClassVar[str] = "training.distributed"
    backend: Literal["auto", "nccl", "gloo"] = Field(description="auto: nccl on CUDA, gloo "
                                                                 "on the CPU")
    sync_bn: bool = Field(description="synchronise BatchNorm statistics (CUDA only)")
    nnodes: int = Field(ge=1, description="machines; each runs the training pipeline")
    rdzv_endpoint: str = Field(description="host:port of the rendezvous; port 0: a free one "
                                           "(one node)")
    rdzv_backend: Literal["c10d", "static"] = Field(description="torch elastic rendezvous "
                                                                "backend")
    run_id: str = Field(description="rendezvous id shared by the nodes of one run")
    max_restarts: int = Field(ge=0, description="relaunches of the workers after a failure")
