"""Image transforms: augmentation policies, and the evaluation transform.

A policy (see :mod:`visrec.core.policies`) is recorded as a small dict, the augmentation
*spec*, so that the augmentation pipeline can save it and training can rebuild the same
transform.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch import nn
from torchvision.transforms import InterpolationMode, v2

from visrec.core.imgaug_pipeline import ImgaugTransform
from visrec.core.policies import (
    COMPONENTS,
    Component,
    Cutout,
    Erasing,
    FlipCrop,
    PolicyError,
    canonical,
    parse_policy,
)

CROP_FRACTION = 0.875  # timm's default crop_pct: a 224 crop out of 256
JSD_VIEWS = 3  # AugMix's consistency loss: the clean image and two AugMix views


def make_spec(policy: str, imgaug: dict[str, list] | None = None, *,
              scale: tuple[float, float] = (0.35, 1.0), hflip: bool = True,
              path: str = "augmentation.policy") -> dict:
    """The augmentation spec of a policy string: what training rebuilds the transform from.

    Args:
        policy: The policy string.
        imgaug: The defined imgaug pipelines (``augmentation.imgaug``).
        scale: ``flip_crop``'s area range where the policy does not set it.
        hflip: ``flip_crop``'s flip where the policy does not set it.
        path: The parameter the policy comes from, for errors.

    Returns:
        ``{"policy": canonical string, "components": [...], "imgaug": {used pipelines}}``.

    Raises:
        PolicyError: Naming ``path``, the policy and what is accepted.
    """
    pipelines = imgaug or {}
    try:
        components = parse_policy(policy, {"scale": tuple(scale), "hflip": bool(hflip)},
                                  set(pipelines))
    except PolicyError as error:
        raise PolicyError(f"{path} = {policy!r}: {error}") from None
    used = {c.pipeline for c in components if c.name == "imgaug"}
    return {"policy": canonical(components),
            "components": [component.record() for component in components],
            "imgaug": {name: pipelines[name] for name in sorted(used)}}


def spec_components(spec: dict) -> list[Component]:
    """The components of a spec, as :func:`make_spec` recorded them."""
    return _components(spec["components"])


def _components(records: list[dict]) -> list[Component]:
    return [COMPONENTS[record["name"]](**{k: v for k, v in record.items() if k != "name"})
            for record in records]


def spec_component(spec: dict, name: str) -> Any:
    """The component ``name`` of a spec, or None."""
    return next((c for c in spec_components(spec) if c.name == name), None)


def spec_views(spec: dict) -> int:
    """Views of each image in a batch: 3 with AugMix's consistency loss, else 1."""
    augmix = spec_component(spec, "augmix")
    return JSD_VIEWS if augmix is not None and augmix.jsd else 1


def single_view(spec: dict) -> dict:
    """``spec`` without AugMix's consistency views: one augmented image per image."""
    records = [record | {"jsd": False} if record["name"] == "augmix" else record
               for record in spec["components"]]
    return spec | {"policy": canonical(_components(records)), "components": records}


def mix_settings(spec: dict) -> dict[str, float] | None:
    """The batch MixUp / CutMix of a spec as timm ``Mixup`` settings, or None.

    With both, a batch is mixed with the larger of their probabilities and takes one of
    the two at random (``switch_prob`` 0.5).
    """
    mixup, cutmix = spec_component(spec, "mixup"), spec_component(spec, "cutmix")
    if mixup is None and cutmix is None:
        return None
    return {"mixup_alpha": mixup.alpha if mixup else 0.0,
            "cutmix_alpha": cutmix.alpha if cutmix else 0.0,
            "prob": max(c.prob for c in (mixup, cutmix) if c is not None),
            "switch_prob": 0.5 if mixup and cutmix else 0.0}


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


class BatchAugment(nn.Module):
    """The per-batch half of a training transform, run on the training device.

    Random-resized crops of a whole batch come out of one ``roi_align`` call (one box per
    image, resampled bilinearly to ``image_size``); flips are one ``torch.where``. A crop
    too large for the image at its drawn aspect is clamped to the image's side (torchvision
    instead redraws up to 10 times). Random erasing or CutOut (timm's ``RandomErasing``)
    follow the normalisation. Their random parameters are drawn on the CPU from torch's
    and Python's global generators, which the engine reseeds every epoch, so CPU runs
    repeat exactly and resume exactly.

    With ``views`` > 1 each image arrives as ``views`` images stacked on the channel axis
    (AugMix's clean and augmented views): they share the crop and the flip, and come out
    as ``views`` consecutive batches, ``[clean; view 1; view 2]``, as timm's
    ``JsdCrossEntropy`` splits them; erasing spares the clean one.

    Args:
        image_size: Output side in pixels.
        crop: Random-resized crop (area ``scale``, aspect ``ratio``); False only resizes.
        scale: Range of the crop's share of the image area.
        hflip: Mirror half of the images.
        mean: Per-channel normalisation mean; None leaves values in [0, 1].
        std: Per-channel normalisation std.
        ratio: Range of the crop's aspect ratio (torchvision's default).
        erasing: An ``Erasing`` or ``Cutout`` component, or None.
        views: Views stacked on the channel axis of each input image.
    """

    def __init__(self, image_size: int, crop: bool, scale: tuple[float, float] = (0.08, 1.0),
                 hflip: bool = False, mean: tuple[float, ...] | None = None,
                 std: tuple[float, ...] | None = None,
                 ratio: tuple[float, float] = (3 / 4, 4 / 3),
                 erasing: Erasing | Cutout | None = None, views: int = 1) -> None:
        super().__init__()
        self.image_size, self.crop, self.hflip, self.views = image_size, crop, hflip, views
        self.scale, self.log_ratio = scale, (math.log(ratio[0]), math.log(ratio[1]))
        self.erasing = erasing
        self._eraser: Any = None
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

    def _erase(self, batch: torch.Tensor) -> torch.Tensor:
        if self._eraser is None or self._eraser.device != batch.device:
            from timm.data.random_erasing import RandomErasing  # noqa: PLC0415

            splits = self.views if self.views > 1 else 0
            if isinstance(self.erasing, Cutout):  # a fixed square, filled with 0 (the mean)
                area = self.erasing.size**2
                self._eraser = RandomErasing(self.erasing.p, min_area=area, max_area=area,
                                             min_aspect=1.0, max_aspect=1.0, mode="const",
                                             num_splits=splits, device=batch.device)
            else:
                erasing = self.erasing
                self._eraser = RandomErasing(erasing.p, min_area=erasing.scale[0],
                                             max_area=erasing.scale[1],
                                             min_aspect=erasing.ratio[0],
                                             max_aspect=erasing.ratio[1], mode=erasing.mode,
                                             num_splits=splits, device=batch.device)
        return self._eraser(batch)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or [0, 1] float) images N x (V·C) x H x W to float (V·N) x C x size x size."""
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
        if self.views > 1:  # N x (V·C) x H x W -> (V·N) x C x H x W, view-major
            batch = batch.unflatten(1, (self.views, -1)).transpose(0, 1).flatten(0, 1)
        if self.mean is not None:
            batch = (batch - self.mean) / self.std
        if self.erasing is not None:
            batch = self._erase(batch.contiguous())
        return batch


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
    if component.name == "autoaugment":
        policy = v2.AutoAugmentPolicy({"imagenet": "imagenet", "cifar10": "cifar10",
                                       "svhn": "svhn"}[component.policy])
        return v2.AutoAugment(policy, interpolation=bilinear)
    if component.name == "randaugment":
        return v2.RandAugment(num_ops=component.n, magnitude=component.m,
                              interpolation=bilinear)
    if component.name == "trivialaugment":
        return v2.TrivialAugmentWide(interpolation=bilinear)
    if component.name == "augmix":
        return v2.AugMix(severity=component.severity, mixture_width=component.width,
                         chain_depth=component.depth, alpha=component.alpha,
                         interpolation=bilinear)
    raise AssertionError(component.name)


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
    components = spec_components(spec)
    if not components:
        return TrainTransform(v2.Compose([v2.ToImage(), *_resize_center(image_size, mode)]),
                              BatchAugment(image_size, crop=False, mean=mean, std=std))
    side = resolution or math.ceil(image_size / CROP_FRACTION)
    steps: list[Callable] = [SquareImage(side, mode)]
    for component in components:
        if component.name == "imgaug":
            steps.append(ImgaugTransform(spec["imgaug"][component.pipeline],
                                         f"augmentation.imgaug.{component.pipeline}"))
        elif component.stage == "image":
            steps.append(_image_step(component))
    views = spec_views(spec)
    sample: Callable = v2.Compose(steps)
    if views > 1:
        split = next(i for i, step in enumerate(steps) if isinstance(step, v2.AugMix))
        sample = JsdViews(v2.Compose(steps[:split]), v2.Compose(steps[split:]), views)
    geometric = next(c for c in components if isinstance(c, FlipCrop))
    erasing = next((c for c in components if isinstance(c, Erasing | Cutout)), None)
    return TrainTransform(sample, BatchAugment(
        image_size, crop=True, scale=tuple(geometric.scale), ratio=tuple(geometric.ratio),
        hflip=geometric.hflip, mean=mean, std=std, erasing=erasing, views=views))


def build_eval_transform(image_size: int, mean: tuple[float, ...] | None = None,
                         std: tuple[float, ...] | None = None,
                         interpolation: str = "bicubic") -> v2.Compose:
    """Evaluation transform: shorter side to ``image_size``, centre crop, normalise."""
    return v2.Compose(_resize_center(image_size, InterpolationMode(interpolation))
                      + _to_tensor(mean, std))
