"""Image transforms: the training transform of an augmentation spec, and the evaluation
transform.

A training transform comes in two halves (:class:`TrainTransform`): per image in the
DataLoader (bringing images to a common side, then the per-image policies), and per
batch on the training device (:class:`visrec.core.augment.batch.BatchAugment`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from visrec.core.augment.batch import BatchAugment
from visrec.core.augment.imgaug_pipelines import ImgaugTransform
from visrec.core.augment.policies import (
    AugMix,
    AutoAugment,
    Component,
    Cutout,
    Erasing,
    FlipCrop,
    Imgaug,
    RandAugment,
)
from visrec.core.augment.spec import JSD_VIEWS, AugmentationSpec

CROP_FRACTION = 0.875  # timm's default crop_pct: a 224 crop out of 256


def _to_tensor(mean: tuple[float, ...] | None, std: tuple[float, ...] | None) -> list:
    steps = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if mean is not None and std is not None:
        steps.append(v2.Normalize(mean=list(mean), std=list(std)))
    return steps


MAX_ASPECT = 2.0  # longer side / shorter side kept before the resize (see LimitAspect)


class LimitAspect:
    """Centre-crop the longer side to at most ``MAX_ASPECT`` times the shorter one.

    The resize that follows brings the shorter side to the model's size, so a 1 x 60,000
    strip would otherwise become a 224 x 13.4 M image (gigabytes) before the centre crop
    keeps its middle square. Images up to 2:1 (4:3, 3:2, 16:9 photographs) pass untouched;
    longer ones lose only pixels the centre crop would drop anyway.
    """

    def __call__(self, image: Image.Image | torch.Tensor) -> Image.Image | torch.Tensor:
        """``image``, cropped around its centre when it is longer than 2:1."""
        width, height = image.size if isinstance(image, Image.Image) else (
            image.shape[-1], image.shape[-2])
        limit = math.floor(min(width, height) * MAX_ASPECT)
        if max(width, height) <= limit:
            return image
        return v2.functional.center_crop(image, [min(height, limit), min(width, limit)])


def _resize_center(image_size: int, interpolation: InterpolationMode) -> list:
    return [LimitAspect(), v2.Resize(image_size, interpolation=interpolation, antialias=True),
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


class JsdViews:
    """The clean image and ``views - 1`` augmented ones, stacked on the channel axis.

    Args:
        before: Per-image steps that every view shares (those written before AugMix).
        augment: AugMix and the steps after it, drawn anew for each augmented view.
        views: Views per image.
    """

    def __init__(self, before: Callable, augment: Callable, views: int = JSD_VIEWS) -> None:
        self.before, self.augment, self.views = before, augment, views

    def __call__(self, image: Image.Image | torch.Tensor) -> torch.Tensor:
        """A (views·C) x H x W uint8 tensor."""
        clean = self.before(image)
        return torch.cat([clean, *(self.augment(clean) for _ in range(self.views - 1))])


@dataclass(frozen=True)
class TrainTransform:
    """A training transform in two halves: per image in the loader, per batch on the device.

    ``sample`` turns a decoded image (PIL, or a uint8 tensor from the packed cache) into a
    uint8 tensor of a common side (the cache's resolution, or the output side for policy
    ``none``), plus the per-image policies (AutoAugment, RandAugment, AugMix, imgaug, ...).
    ``batch`` crops, flips, normalises and erases whole batches on the device. Calling the
    transform applies both to one image, as previews and tests do; with AugMix's
    consistency loss it returns the first augmented view.
    """

    sample: Callable[[Image.Image | torch.Tensor], torch.Tensor]
    batch: BatchAugment

    def __call__(self, image: Image.Image | torch.Tensor) -> torch.Tensor:
        """Both halves on one image: a float tensor C x size x size."""
        views = self.batch(self.sample(image).unsqueeze(0))
        return views[1 if self.batch.views > 1 else 0]


def _image_step(component: Component) -> Callable:
    """The per-image transform of a component of stage ``image``, on uint8 tensors."""
    bilinear = InterpolationMode.BILINEAR
    if isinstance(component, AutoAugment):
        policy = v2.AutoAugmentPolicy({"imagenet": "imagenet", "cifar10": "cifar10",
                                       "svhn": "svhn"}[component.policy])
        return v2.AutoAugment(policy, interpolation=bilinear)
    if isinstance(component, RandAugment):
        return v2.RandAugment(num_ops=component.n, magnitude=component.m,
                              interpolation=bilinear)
    if component.name == "trivialaugment":
        return v2.TrivialAugmentWide(interpolation=bilinear)
    if isinstance(component, AugMix):
        return v2.AugMix(severity=component.severity, mixture_width=component.width,
                         chain_depth=component.depth, alpha=component.alpha,
                         interpolation=bilinear)
    raise AssertionError(component.name)


def make_train_transform(spec: AugmentationSpec, image_size: int,
                         mean: tuple[float, ...] | None = None,
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
    components = spec.parts()
    if not components:
        return TrainTransform(v2.Compose([v2.ToImage(), *_resize_center(image_size, mode)]),
                              BatchAugment(image_size, crop=False, mean=mean, std=std))
    side = resolution or math.ceil(image_size / CROP_FRACTION)
    steps: list[Callable] = [SquareImage(side, mode)]
    for component in components:
        if isinstance(component, Imgaug):
            steps.append(ImgaugTransform(spec.imgaug[component.pipeline],
                                         f"augmentation.imgaug.{component.pipeline}"))
        elif component.stage == "image":
            steps.append(_image_step(component))
    views = spec.views
    sample: Callable = v2.Compose(steps)
    if views > 1:
        split = next(i for i, step in enumerate(steps) if isinstance(step, v2.AugMix))
        sample = JsdViews(v2.Compose(steps[:split]), v2.Compose(steps[split:]), views)
    geometric = next(c for c in components if isinstance(c, FlipCrop))
    erasing = next((c for c in components if isinstance(c, Erasing | Cutout)), None)
    return TrainTransform(sample, BatchAugment(
        image_size, crop=True, scale=geometric.scale, ratio=geometric.ratio,
        hflip=geometric.hflip, mean=mean, std=std, erasing=erasing, views=views))


def make_eval_transform(image_size: int, mean: tuple[float, ...] | None = None,
                        std: tuple[float, ...] | None = None,
                        interpolation: str = "bicubic") -> v2.Compose:
    """Evaluation transform: shorter side to ``image_size``, centre crop, normalise."""
    return v2.Compose(_resize_center(image_size, InterpolationMode(interpolation))
                      + _to_tensor(mean, std))
