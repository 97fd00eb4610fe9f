"""Fixtures of the core tests: small real image files written with PIL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_png(path: Path, size: tuple[int, int] = (16, 12),
              colour: tuple[int, int, int] = (200, 30, 30)) -> Path:
    """Write a solid-colour RGB PNG of ``size`` (width, height), making parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


@pytest.fixture
def png() -> Callable[..., Path]:
    """The :func:`write_png` helper, as a fixture."""
    return write_png


@pytest.fixture
def asymmetric_image() -> Image.Image:
    """A square 40x40 RGB image that is not mirror-symmetric (red rises left to right)."""
    width, height = 40, 40
    ramp = np.tile(np.linspace(0, 255, width, dtype=np.float64), (height, 1))
    vertical = np.tile(np.linspace(0, 255, height, dtype=np.float64)[:, None], (1, width))
    pixels = np.stack([ramp, 255 - ramp, vertical], axis=-1)
    return Image.fromarray(pixels.round().astype(np.uint8))
