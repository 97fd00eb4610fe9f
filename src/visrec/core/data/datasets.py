"""Torch datasets and loaders over the manifest: packed-cache arrays, or the image files."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sized
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import tv_tensors

from visrec.core.data.cache import ImageCache
from visrec.core.images import load_image

logger = logging.getLogger(__name__)
Transform = Callable[[Image.Image | torch.Tensor], torch.Tensor]


class ManifestImageDataset(Dataset):
    """Image files listed by relative path under a root, with integer labels.

    Every item decodes its file: use it when the packed cache is off.

    Args:
        root: Folder the paths are relative to.
        paths: Relative image paths.
        labels: Class index of each path.
        transform: Maps a PIL image to a tensor; None returns the PIL image.
        channels: 3 for RGB, 1 for grayscale.
    """

    def __init__(self, root: str | Path, paths: Iterable[str], labels: npt.ArrayLike,
                 transform: Transform | None, channels: int = 3) -> None:
        self.root = Path(root)
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform
        self.channels = channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = load_image(self.root / self.paths[index], self.channels)
        return (image if self.transform is None else self.transform(image),
                int(self.labels[index]))


class CachedImageDataset(Dataset):
    """Images read from the packed cache's memory-mapped pool: no decoding per item.

    Args:
        cache: The packed image cache (opened lazily in each loader process).
        slots: Pool slot of each image.
        labels: Class index of each image.
        transform: Maps a ``CxHxW`` uint8 image tensor to a tensor; None returns it as is.
    """

    def __init__(self, cache: ImageCache, slots: npt.ArrayLike, labels: npt.ArrayLike,
                 transform: Transform | None) -> None:
        self.cache = cache
        self.slots = np.asarray(slots, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.slots)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        pixels = np.array(self.cache.pixels[self.slots[index]])  # copy out of the map
        image = tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1))
        return (image if self.transform is None else self.transform(image),
                int(self.labels[index]))


def manifest_dataset(rows: pd.DataFrame, cache: ImageCache | None, root: str | Path,
                     transform: Transform | None,
                     channels: int = 3) -> ManifestImageDataset | CachedImageDataset:
    """The dataset of manifest ``rows``: from the packed cache when it holds them all.

    Args:
        rows: Manifest rows (path, class_index, cache_index).
        cache: The packed image cache, or None.
        root: Folder the manifest's paths are relative to (used without the cache).
        transform: Applied to each image.
        channels: 3 for RGB, 1 for grayscale (used without the cache).
    """
    if cache is not None and cache.enabled:
        if (rows["cache_index"] >= 0).all():
            return CachedImageDataset(cache, rows["cache_index"], rows["class_index"],
                                      transform)
        logger.warning("the packed cache lacks %d of %d images; reading the files instead",
                       int((rows["cache_index"] < 0).sum()), len(rows))
    return ManifestImageDataset(root, rows["path"], rows["class_index"], transform, channels)


def auto_num_workers(device: torch.device) -> int:
    """Loader processes: on CUDA most cores decode; on a small CPU they would steal compute."""
    cores = os.cpu_count() or 1
    if device.type == "cuda":
        return min(8, cores)
    return 0 if cores <= 2 else min(4, cores // 2)


def make_loader(dataset: Dataset, batch_size: int, device: torch.device, seed: int,
                train: bool, sampler: Sampler[int] | None = None,
                num_workers: int | None = None) -> DataLoader:
    """A DataLoader that is reproducible under ``seed``.

    Args:
        dataset: The images.
        batch_size: Images per batch.
        device: Where batches go (pinned memory on CUDA).
        seed: Seeds shuffling, sampling and the workers' augmentation.
        train: Shuffle (or sample) and drop a last incomplete batch (BatchNorm on 1 image fails).
        sampler: Draws the training rows (class-balanced sampling, resampling), or None
            to shuffle.
        num_workers: Loader processes; None chooses with :func:`auto_num_workers`.
    """
    generator = torch.Generator().manual_seed(seed)
    sampler = sampler if train else None
    rows = len(cast(Sized, dataset if sampler is None else sampler))
    workers = auto_num_workers(device) if num_workers is None else num_workers
    # Training workers start anew each epoch, seeded from the loader's generator, which the
    # training loop reseeds per epoch: a resumed run then augments exactly as an unbroken one.
    return DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None,
                      sampler=sampler, generator=generator, num_workers=workers,
                      pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0 and not train,
                      drop_last=train and rows > batch_size)
