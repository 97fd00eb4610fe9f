"""A model's input config: image size, interpolation, normalisation and channels."""

from __future__ import annotations

import numpy as np
from torch import nn

from visrec.core.records import Record


class ModelInputs(Record):
    """What a model expects of its input images.

    Attributes:
        image_size: Side of the square input, pixels.
        interpolation: Resampling filter of resizes (``bicubic``, ``bilinear``, ...).
        mean: Per-channel normalisation mean, of [0, 1] pixel values.
        std: Per-channel normalisation standard deviation.
        in_chans: 3 for RGB, 1 for grayscale.
    """

    image_size: int
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_chans: int


def resolve_input_config(model: nn.Module, image_size: int | None,
                         in_chans: int = 3) -> ModelInputs:
    """Image size, interpolation and normalisation: the model's own unless ``image_size`` is set.

    Args:
        model: A timm model.
        image_size: Side in pixels, or None for the model's default.
        in_chans: 1 averages the RGB mean and std into one grey channel's.
    """
    from timm.data import resolve_model_data_config  # noqa: PLC0415

    config = resolve_model_data_config(model)
    mean, std = [float(m) for m in config["mean"]], [float(s) for s in config["std"]]
    if in_chans == 1 and len(mean) != 1:
        mean, std = [float(np.mean(mean))], [float(np.mean(std))]
    return ModelInputs(image_size=int(image_size or config["input_size"][-1]),
                       interpolation=str(config.get("interpolation", "bicubic")),
                       mean=tuple(mean), std=tuple(std), in_chans=in_chans)
