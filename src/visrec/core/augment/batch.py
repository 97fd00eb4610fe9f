"""The per-batch half of a training transform: crops, flips, normalisation and erasing of
whole batches on the training device."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torchvision.transforms import v2

from visrec.core.augment.policies import Cutout, Erasing


class BatchAugment(nn.Module):
    """The per-batch half of a training transform, run on the training device.

    Random-resized crops of a whole batch come out of one ``roi_align`` call (one box per
    image, resampled bilinearly to ``image_size``); flips are one ``torch.where``. A crop
    too large for the image at its drawn aspect is clamped to the image's side (torchvision
    instead redraws up to 10 times). Random erasing or CutOut (timm's ``RandomErasing``)
    follow the normalisation. Their random parameters are drawn on the CPU from torch's
    and Python's global generators, which the training loop reseeds every epoch, so CPU runs
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
            elif isinstance(self.erasing, Erasing):
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
