"""Torch datasets and loaders over the manifest: images stay files, the table describes them."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

SIXTEEN_BIT_TO_EIGHT = 257.0  # 65535 / 255
INTEGER_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB as a person sees the image: EXIF orientation applied, 16-bit and float
    intensities mapped onto 0..255, grayscale, palette, alpha and CMYK converted.

    Args:
        image: A decoded PIL image of any mode.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in INTEGER_MODES:
        pixels = np.asarray(image, dtype=np.float64) / SIXTEEN_BIT_TO_EIGHT
        image = Image.fromarray(pixels.clip(0, 255).round().astype(np.uint8))
    elif image.mode == "F":
        pixels = np.asarray(image, dtype=np.float64)
        pixels = pixels * 255.0 if pixels.max(initial=0.0) <= 1.0 else pixels  # [0, 1] floats
        image = Image.fromarray(pixels.clip(0, 255).round().astype(np.uint8))
    return image.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """Decode an image file as 8-bit RGB (see :func:`to_rgb`)."""
    with Image.open(path) as image:
        return to_rgb(image)


class ManifestImageDataset(Dataset):
    """Images listed by relative path under a root, with integer labels.

    Args:
        root: Folder the paths are relative to.
        paths: Relative image paths.
        labels: Class index of each path.
        transform: Maps a PIL RGB image to a tensor.
    """

    def __init__(self, root: str | Path, paths: Sequence[str], labels: Sequence[int],
                 transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.root = Path(root)
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = load_rgb(self.root / self.paths[index])
        return self.transform(image), int(self.labels[index])


def auto_num_workers(device: torch.device) -> int:
    """Loader processes: on CUDA most cores decode; on a small CPU they would steal compute."""
    cores = os.cpu_count() or 1
    if device.type == "cuda":
        return min(8, cores)
    return 0 if cores <= 2 else min(4, cores // 2)


def make_loader(dataset: Dataset, batch_size: int, device: torch.device, seed: int,
                train: bool, sample_weights: np.ndarray | None = None,
                num_workers: int | None = None) -> DataLoader:
    """A DataLoader that is reproducible under ``seed``.

    Args:
        dataset: The images.
        batch_size: Images per batch.
        device: Where batches go (pinned memory on CUDA).
        seed: Seeds shuffling, sampling and the workers' augmentation.
        train: Shuffle (or sample) and drop a last incomplete batch (BatchNorm on 1 image fails).
        sample_weights: Per-row weights for sampling with replacement, or None.
        num_workers: Loader processes; None chooses with :func:`auto_num_workers`.
    """
    generator = torch.Generator().manual_seed(seed)
    sampler = None
    if train and sample_weights is not None:
        sampler = WeightedRandomSampler(torch.as_tensor(sample_weights, dtype=torch.float64),
                                        num_samples=len(dataset), replacement=True,
                                        generator=generator)
    workers = auto_num_workers(device) if num_workers is None else num_workers
    return DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None,
                      sampler=sampler, generator=generator, num_workers=workers,
                      pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                      drop_last=train and len(dataset) > batch_size)
