"""Custom Kedro datasets of visrec."""

from visrec.datasets.atomic import AtomicDataset
from visrec.datasets.chunked_csv import ChunkedCSVDataset, PartialCSVDataset
from visrec.datasets.embedding_index import EmbeddingIndexDataset
from visrec.datasets.folder import FigureFolderDataset
from visrec.datasets.image_cache import ImageCacheDataset
from visrec.datasets.optuna_study import OptunaStorageDataset
from visrec.datasets.raw_bytes import BytesDataset
from visrec.datasets.records import RecordDataset
from visrec.datasets.safetensors_models import (
    SafetensorsModelDataset,
    SafetensorsModelsDataset,
)
from visrec.datasets.training_run import CheckpointDataset, LiveDataset

__all__ = ["AtomicDataset", "BytesDataset", "CheckpointDataset", "ChunkedCSVDataset",
           "EmbeddingIndexDataset", "FigureFolderDataset", "ImageCacheDataset", "LiveDataset",
           "OptunaStorageDataset", "PartialCSVDataset", "RecordDataset", "SafetensorsModelDataset",
           "SafetensorsModelsDataset"]
