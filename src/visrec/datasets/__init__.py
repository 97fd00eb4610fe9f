"""Custom Kedro datasets of visrec."""

from visrec.datasets.atomic import AtomicDataset
from visrec.datasets.safetensors_models import SafetensorsModelsDataset

__all__ = ["AtomicDataset", "SafetensorsModelsDataset"]
