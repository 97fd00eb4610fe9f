"""Custom Kedro datasets of visrec."""

from visrec.datasets.atomic import AtomicDataset
from visrec.datasets.image_cache import ImageCacheDataset
from visrec.datasets.safetensors_models import SafetensorsModelsDataset

__all__ = ["AtomicDataset", "ImageCacheDataset", "SafetensorsModelsDataset"]
