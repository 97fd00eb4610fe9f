"""Image transforms: augmentation policies chosen by name, and the evaluation transform.

A policy is recorded as a small dict (the augmentation *spec*) so that the
augmentation pipeline can save it and training can rebuild the same transform.
"""

from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode, v2

POLICIES = ("none", "flip_crop", "randaugment")


def make_spec(policy: str, hflip: bool, scale: tuple[float, float], randaugment_ops: int,
              randaugment_magnitude: int) -> dict:
    """The augmentation spec: everything needed to rebuild the training transform.

    Raises:
        ValueError: If ``policy`` is not one of :data:`POLICIES`.
    """
    if policy not in POLICIES:
        raise ValueError(f"augmentation.policy = {policy!r}: accepted {list(POLICIES)}")
    return {"policy": policy, "hflip": bool(hflip), "scale": [float(s) for s in scale],
            "randaugment": {"num_ops": int(randaugment_ops),
                            "magnitude": int(randaugment_magnitude)}}


def _to_tensor(mean: tuple[float, ...] | None, std: tuple[float, ...] | None) -> list:
    steps = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if mean is not None and std is not None:
        steps.append(v2.Normalize(mean=list(mean), std=list(std)))
    return steps


def _resize_center(image_size: int, interpolation: InterpolationMode) -> list:
    return [v2.Resize(image_size, interpolation=interpolation, antialias=True),
            v2.CenterCrop(image_size)]


def build_train_transform(spec: dict, image_size: int, mean: tuple[float, ...] | None = None,
                          std: tuple[float, ...] | None = None,
                          interpolation: str = "bicubic") -> v2.Compose:
    """Training transform of a spec, from a PIL RGB image to a float tensor CxHxW.

    Args:
        spec: An augmentation spec from :func:`make_spec`.
        image_size: Output side in pixels.
        mean: Per-channel normalisation mean; None skips normalisation (previews).
        std: Per-channel normalisation std.
        interpolation: Resampling filter name (``bilinear``, ``bicubic``, ...).
    """
    mode = InterpolationMode(interpolation)
    if spec["policy"] == "none":
        steps = _resize_center(image_size, mode)
    else:
        steps = [v2.RandomResizedCrop(image_size, scale=tuple(spec["scale"]),
                                      interpolation=mode, antialias=True)]
        if spec["hflip"]:
            steps.append(v2.RandomHorizontalFlip())
        if spec["policy"] == "randaugment":
            steps.append(v2.RandAugment(num_ops=spec["randaugment"]["num_ops"],
                                        magnitude=spec["randaugment"]["magnitude"],
                                        interpolation=InterpolationMode.BILINEAR))
    return v2.Compose(steps + _to_tensor(mean, std))


def build_eval_transform(image_size: int, mean: tuple[float, ...] | None = None,
                         std: tuple[float, ...] | None = None,
                         interpolation: str = "bicubic") -> v2.Compose:
    """Evaluation transform: shorter side to ``image_size``, centre crop, normalise."""
    return v2.Compose(_resize_center(image_size, InterpolationMode(interpolation))
                      + _to_tensor(mean, std))
