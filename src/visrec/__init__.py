"""visrec: image-classification training pipelines with Kedro, PyTorch and timm."""

__version__ = "0.1.0"
