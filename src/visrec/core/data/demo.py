"""The demo image folder: scikit-learn's bundled handwritten digits as PNG files."""

from __future__ import annotations

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

DIGITS_MAX = 16.0  # sklearn's digits are 8x8 intensities in 0..16


def long_tail_counts(num_classes: int, largest: int, imbalance_ratio: float) -> list[int]:
    """Exponentially decaying class sizes (Cui et al. 2019's long-tailed CIFAR profile).

    Args:
        num_classes: Number of classes.
        largest: Size of the largest (first) class.
        imbalance_ratio: Largest size divided by smallest size.

    Returns:
        Sizes from largest to smallest; the last is ``largest / imbalance_ratio`` rounded.
    """
    if num_classes == 1:
        return [largest]
    exponents = np.arange(num_classes) / (num_classes - 1)
    return [max(1, round(largest * imbalance_ratio**-e)) for e in exponents]


def make_demo_digits(
    test_per_class: int, largest_class: int, imbalance_ratio: float, image_size: int, seed: int
) -> dict[str, Image.Image]:
    """Make a long-tailed train / balanced test split of the digits as grayscale images.

    Classes are ranked by how many images they have, so the largest train class is
    given to a digit that can fill it; within a class, images are drawn by ``seed``.

    Args:
        test_per_class: Test images per class.
        largest_class: Training images in the largest class.
        imbalance_ratio: Largest / smallest training class.
        image_size: Side of the output images in pixels (upsampled from 8).
        seed: Seed of the draw.

    Returns:
        Images keyed by ``"<split>/<digit>/<index>"`` (a relative path without suffix).

    Raises:
        ValueError: If a digit has too few images for the requested counts.
    """
    digits = load_digits()
    rng = np.random.default_rng(seed)
    labels = np.unique(digits.target)
    available = {int(c): int((digits.target == c).sum()) - test_per_class for c in labels}
    ranked = sorted(available, key=lambda c: (-available[c], c))
    train_counts = dict(zip(ranked, long_tail_counts(len(ranked), largest_class, imbalance_ratio),
                            strict=True))

    images: dict[str, Image.Image] = {}
    for digit in labels:
        wanted = train_counts[int(digit)]
        if available[int(digit)] < wanted:
            raise ValueError(
                f"demo_data: digit {digit} has {available[int(digit)] + test_per_class} images, "
                f"too few for test_per_class={test_per_class} and a train class of {wanted}"
            )
        order = rng.permutation(np.flatnonzero(digits.target == digit))
        for split, indices in (("test", order[:test_per_class]),
                               ("train", order[test_per_class:test_per_class + wanted])):
            for index in indices:
                images[f"{split}/{digit}/{index:04d}"] = _to_image(digits.images[index], image_size)
    return images


def _to_image(pixels: np.ndarray, image_size: int) -> Image.Image:
    scaled = np.clip(pixels / DIGITS_MAX * 255.0, 0, 255).round().astype(np.uint8)
    return Image.fromarray(scaled).resize((image_size, image_size),
                                          Image.Resampling.BICUBIC)
