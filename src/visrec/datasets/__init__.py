"""Custom Kedro datasets of visrec."""

from visrec.datasets.safetensors_models import SafetensorsModelsDataset

__all__ = ["SafetensorsModelsDataset"]
