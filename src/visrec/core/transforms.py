"""Image transforms: augmentation policies chosen by name, and the evaluation transform.

A policy is recorded as a small dict (the augmentation *spec*) so that the
augmentation pipeline can save it and training can rebuild the same transform.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn
from torchvision.transforms import InterpolationMode, v2

CROP_FRACTION = 0.875  # timm's default crop_pct: a 224 crop out of 256

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


class SquareImage:
    """A uint8 image tensor of ``side`` x ``side``: shorter side resized, centre cropped.

    Images of the packed cache already have that side and pass untouched (the resize and
    crop would cost about 30 µs each for nothing).

    Args:
        side: Output side in pixels.
        interpolation: Resampling filter of the resize.
    """

    def __init__(self, side: int, interpolation: InterpolationMode) -> None:
        self.side = side
        self.resize = v2.Compose([v2.ToImage(), *_resize_center(side, interpolation)])

    def __call__(self, image: Image.Image | torch.Tensor) -> torch.Tensor:
        """``image`` as a C x side x side uint8 tensor."""
        if isinstance(image, torch.Tensor) and image.shape[-2:] == (self.side, self.side):
            return image
        return self.resize(image)


class BatchAugment(nn.Module):
    """The per-batch half of a training transform, run on the training device.

    Random-resized crops of a whole batch come out of one ``roi_align`` call (one box per
    image, resampled bilinearly to ``image_size``); flips are one ``torch.where``. A crop
    too large for the image at its drawn aspect is clamped to the image's side (torchvision
    instead redraws up to 10 times). Their
    random parameters are drawn on the CPU from torch's global generator, which the engine
    reseeds every epoch, so CPU runs repeat exactly and resume exactly.

    Args:
        image_size: Output side in pixels.
        crop: Random-resized crop (area ``scale``, aspect ``ratio``); False only resizes.
        scale: Range of the crop's share of the image area.
        hflip: Mirror half of the images.
        mean: Per-channel normalisation mean; None leaves values in [0, 1].
        std: Per-channel normalisation std.
        ratio: Range of the crop's aspect ratio (torchvision's default).
    """

    def __init__(self, image_size: int, crop: bool, scale: tuple[float, float] = (0.08, 1.0),
                 hflip: bool = False, mean: tuple[float, ...] | None = None,
                 std: tuple[float, ...] | None = None,
                 ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> None:
        super().__init__()
        self.image_size, self.crop, self.hflip = image_size, crop, hflip
        self.scale, self.log_ratio = scale, (math.log(ratio[0]), math.log(ratio[1]))
        normalise = mean is not None and std is not None
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1) if normalise
                             else None, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1) if normalise
                             else None, persistent=False)

    def _boxes(self, count: int, height: int, width: int) -> torch.Tensor:
        """One crop box per image, ``[index, x0, y0, x1, y1]`` in pixels."""
        area = height * width * torch.empty(count).uniform_(*self.scale)
        aspect = torch.exp(torch.empty(count).uniform_(*self.log_ratio))
        box_w = torch.sqrt(area * aspect).clamp(max=width)
        box_h = torch.sqrt(area / aspect).clamp(max=height)
        x0 = torch.rand(count) * (width - box_w)
        y0 = torch.rand(count) * (height - box_h)
        index = torch.arange(count, dtype=torch.float32)
        return torch.stack([index, x0, y0, x0 + box_w, y0 + box_h], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or [0, 1] float) images N x C x H x W to float N x C x size x size."""
        from torchvision.ops import roi_align  # noqa: PLC0415

        batch = v2.functional.to_dtype(images.as_subclass(torch.Tensor), torch.float32,
                                       scale=True)
        count, _, height, width = batch.shape
        if self.crop:
            boxes = self._boxes(count, height, width).to(batch.device)
            # sampling_ratio 0: ceil(box side / output side) bilinear samples per output pixel,
            # averaged: one (exact) when enlarging, more (anti-aliased) when shrinking.
            batch = roi_align(batch, boxes, output_size=self.image_size, spatial_scale=1.0,
                              sampling_ratio=0, aligned=True)
        if self.hflip:
            mirrored = (torch.rand(count) < 0.5).view(-1, 1, 1, 1).to(batch.device)
            batch = torch.where(mirrored, batch.flip(-1), batch)
        if self.mean is not None:
            batch = (batch - self.mean) / self.std
        return batch


@dataclass(frozen=True)
class TrainTransform:
    """A training transform in two halves: per image in the loader, per batch on the device.

    ``sample`` turns a decoded image (PIL, or a uint8 tensor from the packed cache) into a
    uint8 tensor of a common side (the cache's resolution, or the output side for policy
    ``none``), plus any per-image policy (RandAugment). ``batch`` crops, flips and
    normalises whole batches on the device. Calling the transform applies both to one
    image, as previews and tests do.
    """

    sample: Callable[[Image.Image | torch.Tensor], torch.Tensor]
    batch: BatchAugment

    def __call__(self, image: Image.Image | torch.Tensor) -> torch.Tensor:
        """Both halves on one image: a float tensor C x size x size."""
        return self.batch(self.sample(image).unsqueeze(0))[0]


def build_train_transform(spec: dict, image_size: int, mean: tuple[float, ...] | None = None,
                          std: tuple[float, ...] | None = None,
                          interpolation: str = "bicubic",
                          resolution: int | None = None) -> TrainTransform:
    """The training transform of a spec, from a PIL image or uint8 tensor to a float tensor.

    Args:
        spec: An augmentation spec from :func:`make_spec`.
        image_size: Output side in pixels.
        mean: Per-channel normalisation mean; None skips normalisation (previews).
        std: Per-channel normalisation std.
        interpolation: Resampling filter name (``bilinear``, ``bicubic``, ...) of resizes.
        resolution: Side the loader brings images to before the crop (the packed cache's);
            None: ``image_size / 0.875``.
    """
    mode = InterpolationMode(interpolation)
    if spec["policy"] == "none":
        return TrainTransform(v2.Compose([v2.ToImage(), *_resize_center(image_size, mode)]),
                              BatchAugment(image_size, crop=False, mean=mean, std=std))
    side = resolution or math.ceil(image_size / CROP_FRACTION)
    steps = [SquareImage(side, mode)]
    if spec["policy"] == "randaugment":
        steps.append(v2.RandAugment(num_ops=spec["randaugment"]["num_ops"],
                                    magnitude=spec["randaugment"]["magnitude"],
                                    interpolation=InterpolationMode.BILINEAR))
    return TrainTransform(v2.Compose(steps), BatchAugment(
        image_size, crop=True, scale=tuple(spec["scale"]), hflip=spec["hflip"], mean=mean,
        std=std))


def build_eval_transform(image_size: int, mean: tuple[float, ...] | None = None,
                         std: tuple[float, ...] | None = None,
                         interpolation: str = "bicubic") -> v2.Compose:
    """Evaluation transform: shorter side to ``image_size``, centre crop, normalise."""
    return v2.Compose(_resize_center(image_size, InterpolationMode(interpolation))
                      + _to_tensor(mean, std))
