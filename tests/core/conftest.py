"""Fixtures of the core tests: small real image files written with PIL."""

from __future__ import annotations

import numpy as np
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
