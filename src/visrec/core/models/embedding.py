"""Embedding models: a timm trunk and an embedder whose output is L2-normalised, and the
features the baselines of metric learning compare against (an untrained trunk, a
classifier's penultimate layer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional

from visrec.core.models.artifact import RunFields, WeightSet
from visrec.core.models.factory import make_classifier
from visrec.core.models.weights import timm_api

Output = Literal["embedding", "trunk"]
"""What an embedding model returns: its embedder's output, or its trunk's pooled features."""


class EmbedderConfig(RunFields):
    """What rebuilds an embedding model and what it is: ``config.json`` beside its tensors.

    Attributes:
        architecture: The timm trunk.
        embedding_size: Dimensions of the embedder's output (what the loss trains on).
        batch_norm: BatchNorm after the embedder's linear layer.
        output: What the model returns: ``embedding`` (the embedder's output) or ``trunk``
            (the trunk's pooled features; the embedder is then a projection head that only
            the loss sees). Weight sets written before this field are ``embedding``.
        loss: The loss it was trained with, every option written out.
        train_classes: The classes it was trained on.
        seed: The training seed.
        git_commit: The code's commit, or None.
        metric_learning: The ``metric_learning`` parameters of the run.
        augmentation: The augmentation spec it was trained with.
        weights: ``final``, ``swa`` or ``ema``.
        val_metrics: Retrieval figures on the validation classes, or None.
        served_from: The weight set the served one is (the served embedder), or None.
        scores: Its validation and test figures (the served embedder), or None.
    """

    embedding_size: int
    batch_norm: bool
    loss: str
    output: Output = "embedding"
    train_classes: tuple[str, ...]
    metric_learning: dict[str, Any]


class EmbeddingNet(nn.Module):
    """A timm trunk (``num_classes=0``: pooled features) and an embedder: a linear layer,
    optionally BatchNorm. The loss trains the embedder's output (:meth:`project`); the model
    returns it, or with ``output="trunk"`` the trunk's pooled features, which transfer better
    to classes it never saw (the projection head of Chen et al. 2020 and Khosla et al.
    2020). Either is L2-normalised, so that cosine similarity is a dot product.

    Args:
        trunk: A timm model without classifier.
        embedding_size: Dimensions of the embedder's output.
        batch_norm: BatchNorm after the linear layer.
        output: ``embedding`` or ``trunk``: what :meth:`forward` returns.
    """

    def __init__(self, trunk: nn.Module, embedding_size: int, batch_norm: bool,
                 output: Output = "embedding") -> None:
        super().__init__()
        if output not in ("embedding", "trunk"):
            raise ValueError(f"embedding model output {output!r}: accepted 'embedding', "
                             "'trunk'")
        self.trunk, self.output, self.embedding_size = trunk, output, embedding_size
        layers: list[nn.Module] = [nn.Linear(timm_api(trunk).num_features, embedding_size)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(embedding_size))
        self.embedder = nn.Sequential(*layers)

    @property
    def output_size(self) -> int:
        """Dimensions of what :meth:`forward` returns."""
        if self.output == "trunk":
            return int(timm_api(self.trunk).num_features)
        return self.embedding_size

    def project(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-length embedder outputs of ``images``: what the loss trains on."""
        return functional.normalize(self.embedder(self.trunk(images)).float(), dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-length vectors of ``images`` (float32 under autocast too): the embedder's
        output, or the trunk's pooled features with ``output="trunk"``."""
        if self.output == "trunk":
            return functional.normalize(self.trunk(images).float(), dim=1)
        return self.project(images)

    def get_classifier(self) -> nn.Module:
        """The embedder: what trains while the trunk is frozen (timm's name for the head)."""
        return self.embedder


class NormalizedFeatures(nn.Module):
    """The pooled features of a timm model before its classifier, L2-normalised: the
    untrained-trunk and cross-entropy baselines of metric learning."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-length penultimate features of ``images``."""
        api = timm_api(self.model)
        features = api.forward_head(api.forward_features(images), pre_logits=True)
        return functional.normalize(features.float(), dim=1)


def make_embedder(architecture: str, embedding_size: int, batch_norm: bool,
                  pretrained_path: str | None = None, in_chans: int = 3,
                  zero_gamma: bool | None = None, output: Output = "embedding",
                  pretrained: bool = False) -> EmbeddingNet:
    """An :class:`EmbeddingNet` on a timm trunk, from scratch or with a local weights file's
    trunk (its classifier, if any, is left out).

    Args:
        architecture: timm model name.
        embedding_size: Dimensions of the embedding.
        batch_norm: BatchNorm after the embedder's linear layer.
        pretrained_path: Local ``.safetensors`` or timm checkpoint, or None.
        in_chans: Input channels.
        zero_gamma: As for :func:`~visrec.core.models.make_classifier`.
        output: What the model returns, ``embedding`` or ``trunk``.
        pretrained: The trunk from timm's hub weights (see ``make_classifier``).
    """
    trunk = make_classifier(architecture, 0, pretrained_path, in_chans, zero_gamma=zero_gamma,
                            pretrained=pretrained)
    return EmbeddingNet(trunk, embedding_size, batch_norm, output)


def trunk_features(architecture: str, pretrained_path: str | Path | None = None,
                   in_chans: int = 3, pretrained: bool = False) -> NormalizedFeatures:
    """The normalised pooled features of a trunk as initialised (timm's initialisation, a
    local weights file or the hub's weights): the ``untrained`` baseline."""
    model = make_classifier(architecture, 0, None if pretrained_path is None
                            else str(pretrained_path), in_chans, pretrained=pretrained)
    return NormalizedFeatures(model).eval()


def embedder_from_weight_set(weight_set: WeightSet[EmbedderConfig]) -> EmbeddingNet:
    """Rebuild the embedding model of a weight set, in eval mode."""
    config = weight_set.config
    model = make_embedder(config.architecture, config.embedding_size, config.batch_norm,
                          in_chans=config.in_chans, output=config.output)
    model.load_state_dict(weight_set.weights)
    return model.eval()
