"""Kedro dataset for trained weight sets: safetensors weights plus a JSON config each.

Layout on disk::

    <path>/<name>/model.safetensors   tensors only, never pickle
    <path>/<name>/config.json         architecture, classes, input size, normalisation, ...

Saving writes a new folder beside the old one and swaps it in with renames, so a
crash mid-save leaves the previous weights intact.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kedro.io import DatasetError

from visrec.core.models import WEIGHTS_FILE, WeightSet, read_weight_set, write_weight_set
from visrec.datasets.folder import FolderDataset, replace_folder
from visrec.datasets.records import record_class

DEFAULT_CONFIG = "visrec.core.models.WeightSetConfig"


class _WeightSetFolder(FolderDataset[Any, Any]):
    """A folder dataset whose weight sets' configs are of ``config_type``."""

    def __init__(self, path: str, config_type: str = DEFAULT_CONFIG,
                 metadata: dict[str, Any] | None = None) -> None:
        """Create the dataset.

        Args:
            path: The folder.
            config_type: Dotted path of the configs' record type (an embedder's:
                ``visrec.core.models.EmbedderConfig``).
            metadata: Free-form metadata, ignored by Kedro.
        """
        super().__init__(path, metadata)
        self._config_path = config_type
        self._config_type = record_class(config_type)

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "config_type": self._config_path}

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class SafetensorsModelsDataset(_WeightSetFolder):
    """Named weight sets in one folder, each a :class:`~visrec.core.models.WeightSet`.

    ``path`` holds one subfolder per weight set. Example catalog entry::

        trained_models:
          type: visrec.datasets.SafetensorsModelsDataset
          path: data/06_models/classifier
    """

    def load(self) -> dict[str, WeightSet]:
        """Load every weight set of the folder, keyed by subfolder name."""
        if not self._path.is_dir():
            raise DatasetError(f"no trained models at '{self._path}': run the training pipeline")
        return {folder.name: read_weight_set(folder, self._config_type)
                for folder in sorted(self._path.iterdir()) if (folder / WEIGHTS_FILE).is_file()}

    def save(self, data: dict[str, WeightSet]) -> None:
        """Replace the folder's weight sets with ``data`` (atomically, by rename)."""
        bad = [name for name in data if not _NAME.match(name)]
        if bad:
            raise DatasetError(f"weight-set names {bad} must use letters, digits, '_', '.', '-'")

        def write(staging: Path) -> None:
            for name, weight_set in data.items():
                (staging / name).mkdir()
                write_weight_set(staging / name, weight_set)

        replace_folder(self._path, write)

    def _exists(self) -> bool:
        return self._path.is_dir() and any(self._path.glob(f"*/{WEIGHTS_FILE}"))


class SafetensorsModelDataset(_WeightSetFolder):
    """One weight set (:class:`~visrec.core.models.WeightSet`) as a folder.

    ``path`` holds ``model.safetensors`` and ``config.json`` (the served model). Example::

        served_model:
          type: visrec.datasets.SafetensorsModelDataset
          path: data/06_models/served
    """

    def load(self) -> WeightSet:
        """Load the weights and config of the folder."""
        if not (self._path / WEIGHTS_FILE).is_file():
            raise DatasetError(f"no model at '{self._path}': run the evaluation pipeline, "
                               "which writes the weight set to serve")
        return read_weight_set(self._path, self._config_type)

    def save(self, data: WeightSet) -> None:
        """Replace the folder with ``data`` (atomically, by rename)."""
        replace_folder(self._path, lambda staging: write_weight_set(staging, data))

    def _exists(self) -> bool:
        return (self._path / WEIGHTS_FILE).is_file()
