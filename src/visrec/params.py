"""Typed parameter blocks, validated by Kedro before any node runs.

Each node that takes ``params:<block>`` annotates it with one of these models;
Kedro (>= 1.3) calls ``model_validate`` on the raw YAML before the run starts.
A bad value fails with the full key (``training.epochs``), the value given, and
what would be accepted.
"""

from __future__ import annotations

import difflib
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)


class ParameterError(ValueError):
    """A parameter has a value that visrec cannot use."""


def format_validation_error(prefix: str, error: ValidationError) -> str:
    """Turn a pydantic error into one line per bad key, prefixed with the block's key.

    Args:
        prefix: The parameter block's key, such as ``"training"``.
        error: The error pydantic raised.

    Returns:
        Lines like ``training.epochs = 0: Input should be greater than or equal to 1``.
    """
    lines = []
    for item in error.errors():
        key = ".".join([prefix, *(str(part) for part in item["loc"])])
        message = item["msg"].removeprefix("Value error, ")
        if not item["loc"]:
            lines.append(message)
        elif item["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown parameter (check the spelling)")
        elif item["type"] == "missing":
            lines.append(f"{key}: required but not set")
        else:
            lines.append(f"{key} = {item['input']!r}: {message}")
    return "\n".join(lines)


class Params(BaseModel):
    """Base for parameter blocks: unknown keys are errors, messages carry the full key."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    key: ClassVar[str] = ""

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Validate ``obj``, raising :class:`ParameterError` with full parameter keys."""
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as error:
            raise ParameterError("\n" + format_validation_error(cls.key, error)) from None


class DemoDataParams(Params):
    """How the demo digits image folder is made (``demo_data``)."""

    key: ClassVar[str] = "demo_data"
    test_per_class: int = Field(30, ge=1, description="test images per class (balanced)")
    largest_class: int = Field(150, ge=2, description="training images in the largest class")
    imbalance_ratio: float = Field(10.0, ge=1.0, description="largest / smallest train class")
    image_size: int = Field(32, ge=8, le=512, description="side of the PNGs, pixels")
    seed: int = 0


class CacheParams(Params):
    """The packed image cache (``ingestion.cache``)."""

    key: ClassVar[str] = "ingestion.cache"
    enabled: bool = Field(True, description="decode once at ingestion; training reads arrays")
    resolution: int | None = Field(
        None, ge=8, le=2048,
        description="side of cached images, pixels; None: training size / 0.875")
    max_disk_gb: float = Field(
        50.0, gt=0.0, description="above this, training reads the image files instead")


class IngestionParams(Params):
    """Where the images are, how they are checked, split and cached (``ingestion``)."""

    key: ClassVar[str] = "ingestion"
    root: str = Field(description="image folder: one folder per class, or train/val/test")
    labels_file: str | None = Field(
        None, description="CSV or parquet with path, label[, split]; paths under root")
    val_fraction: float = Field(0.1, ge=0.0, lt=0.5, description="of train, when no val/")
    test_fraction: float = Field(0.2, ge=0.0, lt=0.5, description="of train, when no test/")
    max_pixels: int = Field(
        100_000_000, ge=1, description="width x height above which a file is refused")
    channels: Literal[1, 3] = Field(3, description="3: RGB; 1: grayscale")
    num_workers: int | None = Field(None, ge=1, description="validation processes; None: all")
    cache: CacheParams = CacheParams()

    @field_validator("root")
    @classmethod
    def _root_given(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("give the path of an image folder")
        return value

    @field_validator("labels_file")
    @classmethod
    def _labels_file_type(cls, value: str | None) -> str | None:
        if value is not None and Path(value).suffix.lower() not in {".csv", ".parquet", ".pq"}:
            raise ValueError("give a .csv or .parquet file with columns path, label[, split]")
        return value


# Remedies for class imbalance, by the part of training each one changes. A strategy may
# list several names, at most one per part: [class_balanced_sampler, focal].
BALANCE_PARTS = {
    "oversample": "sampler", "undersample": "sampler", "sqrt_sampler": "sampler",
    "class_balanced_sampler": "sampler",
    "class_weights": "class weights", "drw": "class weights",
    "focal": "loss",
    "logit_adjustment": "logit adjustment",
    "crt": "classifier re-training",
}
BALANCE_STRATEGIES = ("none", *BALANCE_PARTS, "auto")


class ShotGroupParams(Params):
    """Many/medium/few-shot thresholds in training images (Liu et al. 2019)."""

    key: ClassVar[str] = "class_balance.groups"
    many: int = Field(100, ge=1, description="many-shot: more than this many training images")
    few: int = Field(20, ge=1, description="few-shot: fewer than this many training images")

    @model_validator(mode="after")
    def _ordered(self) -> ShotGroupParams:
        if self.few > self.many + 1:
            raise ValueError(f"class_balance.groups: few = {self.few} must be at most many + 1 "
                             f"= {self.many + 1}, so that every class falls in one group")
        return self


class ResampleParams(Params):
    """Random over- or under-sampling of the training rows (``class_balance.resample``)."""

    key: ClassVar[str] = "class_balance.resample"
    ratio: float = Field(1.0, gt=0.0, le=1.0,
                         description="smallest / largest class after resampling")


class FocalParams(Params):
    """Focal loss (Lin et al. 2017)."""

    key: ClassVar[str] = "class_balance.focal"
    gamma: float = Field(2.0, ge=0.0, le=10.0, description="focusing exponent; 0 is cross-entropy")


class LogitAdjustmentParams(Params):
    """Logit-adjusted loss (Menon et al. 2021)."""

    key: ClassVar[str] = "class_balance.logit_adjustment"
    tau: float = Field(1.0, ge=0.0, le=10.0, description="scale of the log prior; 1 = balanced "
                                                          "softmax")


class DrwParams(Params):
    """Deferred re-weighting (Cao et al. 2019)."""

    key: ClassVar[str] = "class_balance.drw"
    start_fraction: float = Field(0.8, gt=0.0, lt=1.0,
                                  description="of the epochs before the class weights start")


class CrtParams(Params):
    """Classifier re-training with class-balanced sampling (Kang et al. 2020)."""

    key: ClassVar[str] = "class_balance.crt"
    epochs: int = Field(10, ge=1, le=1000)
    lr: float = Field(0.2, gt=0.0, le=10.0, description="learning rate per 256 images")


class AutoParams(Params):
    """How ``strategy: auto`` decides (``class_balance.auto``)."""

    key: ClassVar[str] = "class_balance.auto"
    min_imbalance_ratio: float = Field(
        3.0, ge=1.0, description="below this train imbalance ratio, no remedy")


class ClassBalanceParams(Params):
    """Analysis of the class distribution and the remedy for imbalance (``class_balance``)."""

    key: ClassVar[str] = "class_balance"
    strategy: str | tuple[str, ...] = Field(
        "auto", description="a name of BALANCE_STRATEGIES, or a list with one name per part")
    class_weights: Literal["effective_number", "inverse_frequency"] = Field(
        "effective_number", description="loss weights of class_weights and drw")
    beta: float = Field(0.999, ge=0.0, lt=1.0,
                        description="effective number of samples (1 - beta^n) / (1 - beta)")
    groups: ShotGroupParams = ShotGroupParams()
    resample: ResampleParams = ResampleParams()
    focal: FocalParams = FocalParams()
    logit_adjustment: LogitAdjustmentParams = LogitAdjustmentParams()
    drw: DrwParams = DrwParams()
    crt: CrtParams = CrtParams()
    auto: AutoParams = AutoParams()

    @field_validator("strategy", mode="before")
    @classmethod
    def _known_strategy(cls, value: Any) -> Any:
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list | tuple) or not names or not all(
                isinstance(n, str) for n in names):
            raise ValueError(f"give one name or a list of names of {list(BALANCE_STRATEGIES)}")
        for name in names:
            if name not in BALANCE_STRATEGIES:
                close = difflib.get_close_matches(name, BALANCE_STRATEGIES, n=3, cutoff=0.6)
                hint = f" (did you mean {' or '.join(close)}?)" if close else ""
                raise ValueError(f"unknown strategy {name!r}{hint}; accepted: "
                                 f"{', '.join(BALANCE_STRATEGIES)}")
        if {"none", "auto"} & set(names):
            if len(names) > 1:
                raise ValueError("'none' and 'auto' stand alone; list only remedies to combine")
            return value if isinstance(value, str) else tuple(value)
        parts: dict[str, str] = {}
        for name in names:
            part = BALANCE_PARTS[name]
            if part in parts:
                raise ValueError(f"{parts[part]!r} and {name!r} both set the {part}; "
                                 "combine at most one name per part")
            parts[part] = name
        return value if isinstance(value, str) else tuple(value)

    @property
    def strategies(self) -> tuple[str, ...]:
        """The strategy as a tuple of names."""
        return (self.strategy,) if isinstance(self.strategy, str) else self.strategy


SEARCH_SLOTS = 8  # candidate sub-pipelines of the augmentation search (kedro viz shows each)


class SearchParams(Params):
    """Choosing the policy by proxy trainings (``augmentation.search``).

    Each candidate trains ``epochs`` epochs on ``subset`` of the training images with
    ``model`` (default ``training.model``) and the training recipe without SWA or EMA,
    and is scored by balanced accuracy on the validation split; the best ``1 / eta`` go on
    to ``eta`` times the epochs, over ``rungs`` rungs (successive halving).
    """

    key: ClassVar[str] = "augmentation.search"
    enabled: bool = Field(False, description="false: use augmentation.policy")
    candidates: list[str] = Field(default_factory=list, description="policy strings to compare")
    model: str | None = Field(None, description="proxy architecture; null: training.model")
    epochs: int = Field(4, ge=1, le=1000, description="epochs of the first rung")
    eta: int = Field(2, ge=2, le=10, description="keep 1/eta, multiply epochs by eta")
    rungs: int = Field(3, ge=1, le=6, description="rounds of halving")
    subset: float = Field(1.0, gt=0.0, le=1.0, description="share of each training class")
    tie_tolerance: float = Field(0.0, ge=0.0, le=1.0, description="balanced accuracies this "
                                 "close count as tied; ties go to the cheaper policy")

    @field_validator("model")
    @classmethod
    def _known_architecture(cls, value: str | None) -> str | None:
        return value if value is None else _check_architecture(value)

    @field_validator("candidates")
    @classmethod
    def _fits_the_slots(cls, value: list[str]) -> list[str]:
        if len(value) > SEARCH_SLOTS:
            raise ValueError(f"{len(value)} candidates; the search pipeline has "
                             f"{SEARCH_SLOTS} candidate slots (visrec.params.SEARCH_SLOTS): "
                             "list fewer, or raise SEARCH_SLOTS")
        return value

    @model_validator(mode="after")
    def _enough_candidates(self) -> SearchParams:
        if self.enabled and len(self.candidates) < 2:
            raise ValueError(f"augmentation.search.candidates has {len(self.candidates)} "
                             "policies: the search needs at least 2 (or set "
                             "augmentation.search.enabled: false)")
        return self


class AugmentationParams(Params):
    """Training-time augmentation (``augmentation``): a policy string and its parts.

    ``policy`` is parsed by :mod:`visrec.core.policies`; ``imgaug`` holds named imgaug
    pipelines (:mod:`visrec.core.imgaug_pipeline`) that a policy uses as
    ``imgaug(NAME)``. Both are built here, so a bad name, argument or augmenter fails
    before any node runs, with the parameter's path.
    """

    key: ClassVar[str] = "augmentation"
    policy: str = Field("flip_crop", description="policy string, e.g. 'randaugment(n=2, m=9)'")
    hflip: bool = Field(True, description="flip_crop's default: mirror images; off for "
                                          "digits, text, ...")
    scale: tuple[float, float] = Field((0.35, 1.0), description="flip_crop's default "
                                                                "random-resized-crop area range")
    imgaug: dict[str, Any] = Field(default_factory=dict,
                                   description="named imgaug pipelines: lists of augmenters")
    search: SearchParams = Field(default_factory=SearchParams)
    preview_images: int = Field(8, ge=1, le=64, description="images in the preview grid")
    preview_repeats: int = Field(4, ge=1, le=16, description="augmented copies per image")

    @field_validator("scale")
    @classmethod
    def _scale_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0.0 < low <= high <= 1.0:
            raise ValueError("need 0 < low <= high <= 1, for example [0.35, 1.0]")
        return value

    @model_validator(mode="after")
    def _policies_build(self) -> AugmentationParams:
        from visrec.core.imgaug_pipeline import build_pipeline  # noqa: PLC0415
        from visrec.core.transforms import make_spec  # noqa: PLC0415

        for name, entries in self.imgaug.items():
            build_pipeline(entries, f"augmentation.imgaug.{name}")
        make_spec(self.policy, self.imgaug, scale=self.scale, hflip=self.hflip)
        seen: dict[str, int] = {}
        for index, candidate in enumerate(self.search.candidates):
            path = f"augmentation.search.candidates[{index}]"
            policy = self.spec(candidate, path)["policy"]
            if policy in seen:
                raise ValueError(f"{path} = {candidate!r} is the same policy as "
                                 f"augmentation.search.candidates[{seen[policy]}]")
            seen[policy] = index
        return self

    def spec(self, policy: str | None = None, path: str = "augmentation.policy") -> dict:
        """The augmentation spec of ``policy`` (default: ``augmentation.policy``)."""
        from visrec.core.transforms import make_spec  # noqa: PLC0415

        return make_spec(self.policy if policy is None else policy, self.imgaug,
                         scale=self.scale, hflip=self.hflip, path=path)


class ScheduleParams(Params):
    """Learning-rate schedule (``training.schedule``), stepped after every update."""

    key: ClassVar[str] = "training.schedule"
    name: Literal["cosine", "linear", "step", "cyclic", "onecycle", "constant"] = Field(
        "cosine", description="cosine (Loshchilov & Hutter 2017), linear to zero (Li et al. "
        "2020), step, cyclic triangular (Smith 2017), onecycle (Smith 2018), constant")
    warmup_epochs: int = Field(
        1, ge=0, description="linear warmup from lr / 100 (Goyal et al. 2017); shortened to "
        "fit short runs, with a warning; onecycle warms up for this share of its run")
    min_lr: float = Field(0.0, ge=0.0, description="end of cosine/linear, cyclic low point; "
                                                   "per 256 images")
    step_epochs: int = Field(10, ge=1, description="step: epochs between decays")
    step_rate: float = Field(0.1, gt=0.0, le=1.0, description="step: factor at each decay")
    cycle_epochs: float = Field(4.0, gt=0.0, description="cyclic: epochs of one up-down cycle")


class MixupParams(Params):
    """MixUp (Zhang et al. 2018) and CutMix (Yun et al. 2019) of whole batches (timm Mixup)."""

    key: ClassVar[str] = "training.mixup"
    mixup_alpha: float = Field(0.0, ge=0.0, description="Beta(alpha, alpha) mixing; 0: off")
    cutmix_alpha: float = Field(0.0, ge=0.0, description="Beta(alpha, alpha) box area; 0: off")
    prob: float = Field(1.0, ge=0.0, le=1.0, description="share of batches mixed")
    switch_prob: float = Field(0.5, ge=0.0, le=1.0,
                               description="with both on: share of mixed batches cut, not blended")

    @property
    def enabled(self) -> bool:
        """Whether any batch is mixed."""
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)


class DistillationParams(Params):
    """Knowledge distillation from a trained teacher (Hinton et al. 2015)."""

    key: ClassVar[str] = "training.distillation"
    teacher_path: str | None = Field(
        None, description="a visrec weight-set folder (model.safetensors + config.json), or a "
        "safetensors/timm checkpoint file with teacher_model; null: no distillation")
    teacher_model: str | None = Field(None, description="timm architecture of a teacher file")
    temperature: float = Field(4.0, gt=0.0, le=100.0, description="softmax temperature")
    weight: float = Field(0.5, ge=0.0, le=1.0, description="share of the distillation term")

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
        return None if value is None else _check_architecture(value)


class EmaParams(Params):
    """Exponential moving average of the weights (timm ModelEmaV3), saved as ``ema``."""

    key: ClassVar[str] = "training.ema"
    enabled: bool = False
    decay: float = Field(0.9998, ge=0.0, lt=1.0, description="per update")
    warmup: bool = Field(True, description="lower decay in the first updates (timm use_warmup)")


class SwaParams(Params):
    """Stochastic Weight Averaging over the last epochs (Izmailov et al. 2018)."""

    key: ClassVar[str] = "training.swa"
    enabled: bool = True
    start_fraction: float = Field(0.75, gt=0.0, lt=1.0, description="of epochs before SWA")
    start_epoch: int | None = Field(None, ge=1, description="1-based first SWA epoch; "
                                                            "overrides start_fraction")
    lr: float = Field(0.1, gt=0.0, description="SWA learning rate per 256 images")
    schedule: Literal["constant", "cyclic"] = Field(
        "constant", description="constant: SWALR; cyclic: lr to min_lr in each cycle, "
        "averaging at its end")
    anneal_epochs: int = Field(1, ge=0, description="constant: epochs to anneal into the rate")
    cycle_epochs: int = Field(1, ge=1, description="cyclic: epochs per cycle")
    min_lr: float = Field(0.005, ge=0.0, description="cyclic: lowest rate per 256 images")


class DistributedParams(Params):
    """Worker processes of ``training.devices`` > 1 (torch elastic launch, DDP)."""

    key: ClassVar[str] = "training.distributed"
    backend: Literal["auto", "nccl", "gloo"] = Field("auto", description="auto: nccl on CUDA, "
                                                                          "gloo on the CPU")
    sync_bn: bool = Field(False, description="synchronise BatchNorm statistics (CUDA only)")
    nnodes: int = Field(1, ge=1, description="machines; each runs the training pipeline")
    rdzv_endpoint: str = Field("127.0.0.1:0", description="host:port of the rendezvous; "
                                                          "port 0: a free one (one node)")
    rdzv_backend: Literal["c10d", "static"] = "c10d"
    run_id: str = Field("visrec", description="rendezvous id shared by the nodes of one run")
    max_restarts: int = Field(0, ge=0, description="relaunches of the workers after a failure")


@cache
def _timm_models() -> frozenset[str]:
    import timm  # noqa: PLC0415 - imported on demand: `import timm` takes seconds

    return frozenset(timm.list_models())


def _check_architecture(value: str) -> str:
    known = _timm_models()
    if value.split(".", 1)[0] not in known:  # a pretrained tag may follow: resnet50.a1_in1k
        close = difflib.get_close_matches(value, known, n=5, cutoff=0.6)
        hint = f"close names: {', '.join(close)}" if close else "see timm.list_models()"
        raise ValueError(f"not a timm architecture; {hint}")
    return value


class TrainingParams(Params):
    """Model, recipe, SWA, checkpoints and devices for ``training`` (learning rates per 256
    images, scaled linearly to the global batch: Goyal et al. 2017)."""

    key: ClassVar[str] = "training"
    model: str = Field("resnet18", description="any timm architecture name")
    pretrained_path: str | None = Field(None, description="local safetensors/timm checkpoint")
    freeze_backbone_epochs: int = Field(0, ge=0, description="first epochs train only the "
                                                             "classifier (fine-tuning)")
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1, description="global: split over training.devices")
    image_size: int | None = Field(None, ge=8, le=1024, description="None: the model's own")
    optimizer: Literal["sgd", "adamw", "adam"] = Field("sgd", description="sgd: Nesterov")
    lr: float = Field(0.2, gt=0.0, le=10.0, description="learning rate per 256 images")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum; Adam beta1")
    weight_decay: float = Field(5e-4, ge=0.0)
    no_bias_decay: bool = Field(True, description="no weight decay on biases and norm layers")
    zero_gamma: bool = Field(True, description="last BatchNorm of each residual block starts "
                                               "at 0 (He et al. 2019)")
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    schedule: ScheduleParams = ScheduleParams()
    mixup: MixupParams = MixupParams()
    distillation: DistillationParams = DistillationParams()
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 (or fp16) autocast on CUDA, fp32 on the CPU")
    channels_last: Literal["auto", True, False] = Field(
        "auto", description="NHWC memory layout; auto: on (faster convolutions on GPU and CPU)")
    compile: bool = Field(False, description="torch.compile the model")
    grad_clip: float | None = Field(None, gt=0.0, description="max gradient norm; null: off")
    ema: EmaParams = EmaParams()
    swa: SwaParams = SwaParams()
    resume: Literal["auto", "never"] = Field(
        "auto", description="auto: continue from the last checkpoint of the same settings")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    devices: int | Literal["auto"] = Field(
        1, description="worker processes (DDP); auto: one per GPU, else 1")
    num_workers: int | None = Field(None, ge=0, description="None: automatic")
    distributed: DistributedParams = DistributedParams()

    @field_validator("model")
    @classmethod
    def _known_architecture(cls, value: str) -> str:
        return _check_architecture(value)

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


class EvaluationParams(Params):
    """Evaluation settings (``evaluation``)."""

    key: ClassVar[str] = "evaluation"
    batch_size: int = Field(256, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    serve: str = Field("auto", description="weight set to serve: auto (best on validation) "
                                           "or a name (final, swa, ema)")
    serve_metric: Literal["balanced_accuracy", "top1", "loss"] = Field(
        "balanced_accuracy", description="validation metric that picks the served weights")
    temperature_scaling: bool = Field(True, description="fit T on the validation split")
    calibration_bins: int = Field(15, ge=2, le=100, description="ECE bins (Guo et al.: 15)")
    tta: Literal["none", "hflip"] = Field(
        "none", description="hflip: also score the mean of each image and its mirror image "
                            "(only for models trained with horizontal flips)")
    top_confusions: int = Field(10, ge=1, le=100, description="confused pairs to report")
    gallery_images: int = Field(24, ge=0, le=200, description="highest-loss test images shown")

    @field_validator("serve")
    @classmethod
    def _serve_name(cls, value: str) -> str:
        if not value.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise ValueError("give 'auto' or the name of a weight set (final, swa, ema)")
        return value


class PredictParams(Params):
    """Prediction on new images with the served model (``predict``)."""

    key: ClassVar[str] = "predict"
    input: str | list[str] | None = Field(
        None, description="a folder (searched recursively), a text file with one image path "
                          "per line, or a list of paths")
    top_k: int = Field(5, ge=1, le=100, description="labels and probabilities per image")
    batch_size: int = Field(64, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: int | None = Field(None, ge=0, description="decoding processes; None: auto")
    max_pixels: int = Field(100_000_000, ge=1, description="width x height above which an "
                                                          "image is refused")


class ExportParams(Params):
    """Export of the served model (``export``)."""

    key: ClassVar[str] = "export"
    onnx_opset: int = Field(18, ge=17, le=23, description="ONNX opset of the exported graph")
    parity_images: int = Field(64, ge=1, description="test images the parity check runs on")
    parity_tolerance: float = Field(1e-4, gt=0, description="max |p_onnx - p_torch| allowed")
    batch_size: int = Field(32, ge=1, description="batch of the parity check")
