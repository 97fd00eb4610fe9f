"""Fixtures of the core tests: small real image files written with PIL."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def asymmetric_image() -> Image.Image:
    """A square 40x40 RGB image that is not mirror-symmetric (red rises left to right)."""
    width, height = 40, 40
    ramp = np.tile(np.linspace(0, 255, width, dtype=np.float64), (height, 1))
    vertical = np.tile(np.linspace(0, 255, height, dtype=np.float64)[:, None], (1, width))
    pixels = np.stack([ramp, 255 - ramp, vertical], axis=-1)
    return Image.fromarray(pixels.round().astype(np.uint8))
