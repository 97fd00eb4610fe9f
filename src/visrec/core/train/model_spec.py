"""What model a run trains (:class:`ModelSpec`), as data a worker process builds from."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from visrec.core.models import make_classifier, make_embedder
from visrec.core.models.embedding import Output


@dataclass(frozen=True)
class ModelSpec:
    """How to build the model of a run.

    Attributes:
        architecture: The timm architecture.
        num_outputs: Outputs of its head (classes, or embedding dimensions).
        channels: Input channels.
        pretrained_path: A local weights file, or None to train from scratch.
        pretrained: Start from timm's pretrained weights on the Hugging Face hub.
        zero_gamma: Start residual blocks as the identity (True), not (False), or keep
            timm's initialisation (None).
        kind: ``classifier`` (a head of ``num_outputs`` classes) or ``embedder`` (a trunk
            and an embedder of ``num_outputs`` dimensions, output L2-normalised).
        batch_norm: ``embedder``: BatchNorm after the embedder's linear layer.
        output: ``embedder``: what the model returns, ``embedding`` (the embedder's) or
            ``trunk`` (the trunk's pooled features; the loss still trains the embedder's).
    """

    architecture: str
    num_outputs: int
    channels: int = 3
    pretrained_path: str | None = None
    zero_gamma: bool | None = True
    kind: str = "classifier"
    batch_norm: bool = False
    output: Output = "embedding"
    pretrained: bool = False


def make_model(spec: ModelSpec) -> nn.Module:
    """The model of ``spec``: a classifier, or an embedding model."""
    if spec.kind == "embedder":
        return make_embedder(spec.architecture, spec.num_outputs, spec.batch_norm,
                             spec.pretrained_path, spec.channels, zero_gamma=spec.zero_gamma,
                             output=spec.output, pretrained=spec.pretrained)
    if spec.kind != "classifier":
        raise ValueError(f"model kind {spec.kind!r}: accepted 'classifier', 'embedder'")
    return make_classifier(spec.architecture, spec.num_outputs, spec.pretrained_path,
                           spec.channels, zero_gamma=spec.zero_gamma,
                           pretrained=spec.pretrained)


def state_on_cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``model``'s state dict on the CPU, each tensor contiguous (channels_last
    weights are not, and safetensors saves only contiguous tensors)."""
    return {key: tensor.detach().cpu().contiguous().clone()
            for key, tensor in model.state_dict().items()}
