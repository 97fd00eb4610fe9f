"""timm models: made by name, from scratch or local weights, with the Bag of Tricks' zero-gamma
initialisation; the head-only training switch of fine-tuning and classifier re-training."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from visrec.core.augment import CROP_FRACTION
from visrec.core.models.hub import create_pretrained
from visrec.core.models.inputs import ModelInputs, resolve_input_config
from visrec.core.models.weights import WeightsError, load_backbone_weights, timm_api

logger = logging.getLogger(__name__)


def default_input_size(architecture: str) -> int:
    """The side, in pixels, that ``architecture``'s default pretrained weights expect."""
    from timm.models import get_pretrained_cfg  # noqa: PLC0415

    config = get_pretrained_cfg(architecture)
    return int(config.input_size[-1]) if config is not None else 224


def cache_resolution(image_size: int | None, architecture: str) -> int:
    """A side a little above the training size, so random crops have room (256 for 224)."""
    size = image_size or default_input_size(architecture)
    return int(np.ceil(size / CROP_FRACTION))


def make_classifier(architecture: str, num_classes: int,
                    pretrained_path: str | None = None, in_chans: int = 3,
                    zero_gamma: bool | None = None, pretrained: bool = False) -> nn.Module:
    """A timm model with a head of ``num_classes``: from scratch, from a local file, or
    from timm's pretrained weights on the Hugging Face hub.

    Args:
        architecture: timm model name, such as ``resnet50d``.
        num_classes: Outputs of the classifier head.
        pretrained_path: Local ``.safetensors`` or timm/PyTorch checkpoint, read with
            ``weights_only=True``. Every backbone tensor must fit; the file's classifier is
            kept when its shape fits ``num_classes`` and freshly initialised otherwise.
        in_chans: Input channels: 3 for RGB, 1 for grayscale (an RGB file's first
            convolution is summed over its colour channels, as timm does).
        zero_gamma: Start residual blocks as the identity (True) or not (False), before any
            weights are loaded; None keeps timm's initialisation. Not applied to hub
            weights, which hold their own.
        pretrained: timm's pretrained weights from the hub, through its cache
            (:mod:`visrec.core.models.hub`); not with ``pretrained_path``.

    Raises:
        WeightsError: If the file is missing, unreadable, or does not fit the architecture,
            or the hub weights cannot be had.
    """
    import timm  # noqa: PLC0415 - `import timm` takes seconds; only load it when needed

    if pretrained:
        if pretrained_path is not None:
            raise WeightsError("pretrained = true and pretrained_path: give one of them")
        return create_pretrained(architecture, num_classes, in_chans)
    model = timm.create_model(architecture, pretrained=False, num_classes=num_classes,
                              in_chans=in_chans)
    if zero_gamma is not None:
        if set_zero_gamma(model, zero_gamma) == 0 and zero_gamma:
            logger.info("training.zero_gamma: %s has no residual blocks with a last norm "
                        "layer to zero; its initialisation is unchanged", architecture)
    if pretrained_path is not None:
        load_backbone_weights(model, architecture, Path(pretrained_path))
    return model


def model_inputs(architecture: str, image_size: int | None, num_classes: int,
                 channels: int) -> ModelInputs:
    """The input config of ``architecture`` for images of ``channels`` channels.

    Args:
        architecture: timm model name.
        image_size: ``training.image_size``; None takes the model's own.
        num_classes: Outputs of the head (the config does not depend on it).
        channels: 3 for RGB, 1 for grayscale.
    """
    probe = make_classifier(architecture, num_classes, None, channels)
    return resolve_input_config(probe, image_size, channels)


def residual_blocks(model: nn.Module) -> list[nn.Module]:
    """Blocks whose last norm layer timm can zero (``zero_init_last``): ResNet families."""
    return [module for module in model.modules()
            if callable(getattr(module, "zero_init_last", None))]


def set_zero_gamma(model: nn.Module, enabled: bool) -> int:
    """Start each residual block as the identity (He et al. 2019), or not.

    timm's ResNets zero the last BatchNorm weight of each block by default; with
    ``enabled`` false every norm weight of those blocks is reset to 1, PyTorch's default.

    Returns:
        The number of residual blocks found (0 for models without them).
    """
    blocks = residual_blocks(model)
    with torch.no_grad():
        for block in blocks:
            if enabled:
                timm_api(block).zero_init_last()
                continue
            for module in block.modules():
                if isinstance(module, nn.modules.batchnorm._NormBase | nn.GroupNorm
                              | nn.LayerNorm) and getattr(module, "weight", None) is not None:
                    module.weight.fill_(1.0)
    return len(blocks)


def set_backbone_frozen(model: nn.Module, frozen: bool) -> None:
    """Train only the classifier (``frozen``) or every parameter.

    Args:
        model: A timm model (``get_classifier``).
        frozen: True freezes every parameter outside the classifier.
    """
    head = {id(p) for p in timm_api(model).get_classifier().parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(not frozen or id(parameter) in head)
