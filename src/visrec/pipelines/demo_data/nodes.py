"""Nodes of the demo_data pipeline."""

from PIL import Image

from visrec.core.data import make_demo_digits
from visrec.params import DemoDataParams


def make_demo_images(params: DemoDataParams) -> dict[str, Image.Image]:
    """Digits as a long-tailed train / balanced test image folder, keyed by relative path."""
    return make_demo_digits(test_per_class=params.test_per_class,
                            largest_class=params.largest_class,
                            imbalance_ratio=params.imbalance_ratio,
                            image_size=params.image_size, seed=params.seed)
