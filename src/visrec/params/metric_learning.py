"""Parameters of metric learning (``metric_learning``) and of retrieval (``retrieve``), and
their conversion into the core's run types. The recipe is :class:`RunParams`, shared with
``training``; learning rates are per 256 images, scaled to the global batch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar, Literal, Self

import pandas as pd
import torch
from pydantic import Field, field_validator, model_validator

from visrec.core.augment import AugmentationSpec, make_spec
from visrec.core.data import ImageCache, IngestionReport, check_m_per_class
from visrec.core.models import ModelInputs
from visrec.core.train import (
    ClassificationTask,
    FitConfig,
    LossSpec,
    MetricLearningTask,
    MetricLoss,
    ModelSpec,
    TrainingJob,
    backend_for,
    make_training_job,
    parse_metric_loss,
)
from visrec.params.base import Params
from visrec.params.evaluation import ImageFilesParams
from visrec.params.run import RunParams

BASELINES = ("untrained", "cross_entropy")


class SplitParams(Params):
    """Which classes train, validate and test (``metric_learning.split``): disjoint."""

    key: ClassVar[str] = "metric_learning.split"
    test_classes: float | list[str] = Field(
        description="share of the classes (the last in sorted order) or their names; a "
                    "folder whose train/ and test/ classes are disjoint is kept as it is")
    val_classes: float | list[str] = Field(
        description="share of the training classes (at least 2; 0: no validation) or "
                    "their names; they choose among weight sets")

    @field_validator("test_classes", "val_classes")
    @classmethod
    def _share_or_names(cls, value: float | list[str]) -> float | list[str]:
        if isinstance(value, list):
            if len(set(value)) != len(value):
                raise ValueError("a class is listed twice")
            return [str(name) for name in value]
        if not 0.0 <= value < 1.0:
            raise ValueError("give a share in [0, 1) or a list of class names")
        return value


class MetricLearningParams(RunParams):
    """An embedding trained with a metric-learning loss on P x K batches, measured on
    classes it never saw (``metric_learning``)."""

    key: ClassVar[str] = "metric_learning"
    loss: str = Field(description="loss and options, e.g. 'triplet(margin=0.1, "
                                  "mining=batch_hard)'; names in docs/metric_learning.md")
    embedding_size: int = Field(ge=2, le=4096,
                                description="dimensions of the embedder's output (what the "
                                            "loss trains on)")
    embedding_batch_norm: bool = Field(description="BatchNorm after the embedder's linear "
                                                   "layer")
    output: Literal["embedding", "trunk"] = Field(
        description="what the model returns, is measured on and serves: embedding (the "
                    "embedder's output) or trunk (the trunk's pooled features; the embedder "
                    "is a projection head that only the loss sees)")
    m_per_class: int = Field(ge=2, description="K: images per class in a batch of "
                                               "P = batch_size / K classes")
    proxy_lr: float = Field(gt=0.0, description="proxy losses: the proxies' peak learning "
                                                "rate per 256 images")
    augmentation: str = Field(description="augmentation policy string (no mixup, cutmix or "
                                          "augmix(jsd=true): labels stay whole)")
    split: SplitParams
    baselines: list[Literal["untrained", "cross_entropy"]] = Field(
        description="figures computed in the same run: the trunk as initialised; a "
                    "cross-entropy classifier's penultimate features (same budget)")
    knn: Literal["torch", "faiss"] = Field(description="k-NN search: torch (batched) or "
                                                       "faiss (pip install visrec[faiss])")
    serve: Literal["auto", "final", "swa", "ema"] = Field(
        description="the embedder to serve; auto: best validation MAP@R (final without "
                    "validation classes)")
    gallery_queries: int = Field(ge=1, le=50, description="test queries in the gallery")
    gallery_k: int = Field(ge=1, le=20, description="neighbours shown per query")
    map_method: Literal["tsne", "pca"] = Field(description="2-D map of the test embeddings")
    map_max_points: int = Field(ge=10, description="test images drawn on the map at most")
    onnx_opset: int = Field(ge=17, le=23, description="ONNX opset of the exported embedder")
    parity_tolerance: float = Field(gt=0, description="max |e_onnx - e_torch| allowed")

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, value: str) -> str:
        parse_metric_loss(value)
        return value

    @field_validator("knn")
    @classmethod
    def _faiss_installed(cls, value: str) -> str:
        if value == "faiss":
            try:
                import faiss  # noqa: F401, PLC0415
            except ImportError:
                raise ValueError("faiss is not installed: pip install 'visrec[faiss]', or "
                                 "use torch") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        devices = self.devices if isinstance(self.devices, int) else 1
        if self.batch_size % self.m_per_class or self.batch_size % devices:
            check_m_per_class({}, self.m_per_class, self.batch_size, devices)
        spec = make_spec(self.augmentation, None, path="metric_learning.augmentation")
        if spec.mix() is not None or spec.jsd_weight is not None:
            raise ValueError(f"metric_learning.augmentation = {self.augmentation!r}: mixup, "
                             "cutmix and augmix(jsd=true) mix or repeat labels; metric "
                             "learning needs one class per image")
        return self

    def metric_loss(self) -> MetricLoss:
        """The loss and its options."""
        return parse_metric_loss(self.loss)

    def augmentation_spec(self) -> AugmentationSpec:
        """The training augmentation."""
        return make_spec(self.augmentation, None, path="metric_learning.augmentation")

    def embedder_fit_config(self, seed: int, device: torch.device) -> FitConfig:
        """The recipe; a proxy loss's proxies train at ``proxy_lr`` (its own param group)."""
        config = self.fit_config(seed, device)
        if not self.metric_loss().proxies:
            return config
        scales = (("criterion.", self.proxy_lr / self.lr),)
        return replace(config, optimizer=replace(config.optimizer, lr_scales=scales))

    def check_classes(self, train_sizes: Mapping[Any, int], world_size: int = 1) -> None:
        """Raise when the training classes cannot fill P x K batches (naming the
        parameter, the class and its size)."""
        check_m_per_class(train_sizes, self.m_per_class, self.batch_size, world_size)

    def _job(self, manifest: pd.DataFrame, cache: ImageCache, report: IngestionReport,
             inputs: ModelInputs, seed: int, device: torch.device, **run: Any) -> TrainingJob:
        launch = self.launch_spec(device)
        return make_training_job(
            manifest, cache, report, None, self.augmentation_spec(), inputs,
            batch_size=self.batch_size, num_workers=self.num_workers, device=device,
            launch=launch, backend=backend_for(device, self.distributed.backend),
            sync_bn=self.distributed.sync_bn,
            settings=self.model_dump(exclude={"resume", "num_workers", "device", "serve",
                                              "gallery_queries", "gallery_k", "map_method",
                                              "map_max_points", "onnx_opset",
                                              "parity_tolerance", "knn"}) | {"run": run["name"]},
            **{k: v for k, v in run.items() if k != "name"})

    def embedder_job(self, manifest: pd.DataFrame, cache: ImageCache, report: IngestionReport,
                     inputs: ModelInputs, num_classes: int, seed: int,
                     device: torch.device) -> TrainingJob:
        """The embedder's training run on the manifest's train (and val) rows, as data."""
        self.check_classes(manifest.loc[manifest["split"] == "train", "label"]
                           .value_counts().to_dict(), self.launch_spec(device).nproc_per_node)
        model = ModelSpec(architecture=self.model, num_outputs=self.embedding_size,
                          channels=report.channels, pretrained_path=self.pretrained_path,
                          pretrained=self.pretrained, zero_gamma=self.zero_gamma,
                          kind="embedder",
                          batch_norm=self.embedding_batch_norm, output=self.output)
        task = MetricLearningTask(loss=self.metric_loss(), num_classes=num_classes,
                                  embedding_size=self.embedding_size, knn_backend=self.knn)
        return self._job(manifest, cache, report, inputs, seed, device, name="embedder",
                         model=model, config=self.embedder_fit_config(seed, device),
                         task=task, m_per_class=self.m_per_class)

    def baseline_job(self, manifest: pd.DataFrame, cache: ImageCache, report: IngestionReport,
                     inputs: ModelInputs, num_classes: int, seed: int,
                     device: torch.device) -> TrainingJob:
        """The cross-entropy baseline (its penultimate features are compared): a classifier
        of the training classes with the same trunk, epochs, batch, schedule and
        augmentation, on shuffled batches, without SWA or EMA. It has no validation: the
        validation classes are not its classes."""
        model = ModelSpec(architecture=self.model, num_outputs=num_classes,
                          channels=report.channels, pretrained_path=self.pretrained_path,
                          pretrained=self.pretrained, zero_gamma=self.zero_gamma)
        config = replace(self.fit_config(seed, device), swa=None, ema=None)
        rows = manifest[manifest["split"] == "train"]
        return self._job(rows, cache, report, inputs, seed, device, name="cross_entropy",
                         model=model, config=config,
                         task=ClassificationTask(num_classes=num_classes, loss=LossSpec()))


class RetrieveParams(ImageFilesParams):
    """Retrieval of the most similar reference images for new images (``retrieve``)."""

    key: ClassVar[str] = "retrieve"
    query: str | list[str] | None = Field(
        description="the images to search for: a folder (searched recursively), a text file "
                    "with one path per line, an image file, or a list of paths")
    reference: str | None = Field(
        description="folder of reference images to index (class folders label them); "
                    "null: search the saved index (data/06_models/embedding_index)")
    top_k: int = Field(ge=1, le=100, description="neighbours per query")
    knn: Literal["torch", "faiss"] = Field(description="k-NN search backend")
