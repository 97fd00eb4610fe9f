"""Fixtures of the core tests: small real image files written with PIL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset


@pytest.fixture(scope="module")
def one_torch_thread():
    """Train on one intra-op thread: faster for tiny images, and OpenMP workers spinning on a
    busy 2-core machine made runs 10-80x slower. Use with ``pytest.mark.usefixtures``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def colour_tensors(rows: int, seed: int, classes: int = 3, size: int = 16) -> TensorDataset:
    """Noise images (normalised to [-1, 1]) whose class channel is brighter; classes cycle."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(rows) % classes
    pixels = torch.rand(rows, 3, size, size, generator=generator) * 0.3
    pixels[torch.arange(rows), labels % 3] += 0.7
    return TensorDataset((pixels - 0.5) / 0.5, labels)


@pytest.fixture
def asymmetric_image() -> Image.Image:
    """A square 40x40 RGB image that is not mirror-symmetric (red rises left to right)."""
    width, height = 40, 40
    ramp = np.tile(np.linspace(0, 255, width, dtype=np.float64), (height, 1))
    vertical = np.tile(np.linspace(0, 255, height, dtype=np.float64)[:, None], (1, width))
    pixels = np.stack([ramp, 255 - ramp, vertical], axis=-1)
    return Image.fromarray(pixels.round().astype(np.uint8))


COLOUR_CLASSES = ["red", "green", "blue"]
COLOUR_SIZE = 32  # pixels
COLOUR_TRAIN, COLOUR_VAL = 12, 4  # images per class and split


def write_colour_folder(root: Path) -> pd.DataFrame:
    """Solid-colour 32x32 PNGs (random brightness and noise) of red, green and blue classes,
    in ``root/<split>/<label>/``; the table of their paths, class indices and splits."""
    rng = np.random.default_rng(0)
    rows = []
    for split, per_class in (("train", COLOUR_TRAIN), ("val", COLOUR_VAL)):
        for class_index, label in enumerate(COLOUR_CLASSES):
            for i in range(per_class):
                pixels = rng.integers(0, 40, (COLOUR_SIZE, COLOUR_SIZE, 3))
                pixels[..., class_index] += rng.integers(150, 215)
                path = f"{split}/{label}/{i:02d}.png"
                (root / split / label).mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels.astype(np.uint8)).save(root / path)
                rows.append((path, class_index, split))
    return pd.DataFrame(rows, columns=["path", "class_index", "split"])
