"""Kedro dataset for trained weight sets: safetensors weights plus a JSON config each.

Layout on disk::

    <path>/<name>/model.safetensors   tensors only, never pickle
    <path>/<name>/config.json         architecture, classes, input size, normalisation, ...

Saving writes a new folder beside the old one and swaps it in with renames, so a
crash mid-save leaves the previous weights intact.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from kedro.io import DatasetError
from safetensors.torch import load_file, save_file

from visrec.datasets.folder import FolderDataset, replace_folder

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def read_artifact(folder: Path) -> dict:
    """``{"weights": tensors, "config": dict}`` from a weight-set folder."""
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    return {"weights": load_file(folder / WEIGHTS_FILE), "config": config}


def write_artifact(folder: Path, artifact: dict) -> None:
    """Write one weight set's safetensors file and config into ``folder``."""
    save_file(artifact["weights"], folder / WEIGHTS_FILE)
    (folder / CONFIG_FILE).write_text(json.dumps(artifact["config"], indent=2, sort_keys=True)
                                      + "\n", encoding="utf-8")


class SafetensorsModelsDataset(FolderDataset[dict[str, dict], dict[str, dict]]):
    """Named weight sets in one folder, each ``{"weights": {name: Tensor}, "config": dict}``.

    ``path`` holds one subfolder per weight set. Example catalog entry::

        trained_models:
          type: visrec.datasets.SafetensorsModelsDataset
          path: data/06_models/classifier
    """

    def load(self) -> dict[str, dict]:
        """Load every weight set of the folder, keyed by subfolder name."""
        if not self._path.is_dir():
            raise DatasetError(f"no trained models at '{self._path}': run the training pipeline")
        return {folder.name: read_artifact(folder)
                for folder in sorted(self._path.iterdir()) if (folder / WEIGHTS_FILE).is_file()}

    def save(self, data: dict[str, dict]) -> None:
        """Replace the folder's weight sets with ``data`` (atomically, by rename)."""
        bad = [name for name in data if not _NAME.match(name)]
        if bad:
            raise DatasetError(f"weight-set names {bad} must use letters, digits, '_', '.', '-'")

        def write(staging: Path) -> None:
            for name, artifact in data.items():
                (staging / name).mkdir()
                write_artifact(staging / name, artifact)

        replace_folder(self._path, write)

    def _exists(self) -> bool:
        return self._path.is_dir() and any(self._path.glob(f"*/{WEIGHTS_FILE}"))


class SafetensorsModelDataset(FolderDataset[dict, dict]):
    """One weight set, ``{"weights": {name: Tensor}, "config": dict}``, as a folder.

    ``path`` holds ``model.safetensors`` and ``config.json`` (the served model). Example::

        served_model:
          type: visrec.datasets.SafetensorsModelDataset
          path: data/06_models/served
    """

    def load(self) -> dict:
        """Load the weights and config of the folder."""
        if not (self._path / WEIGHTS_FILE).is_file():
            raise DatasetError(f"no model at '{self._path}': run the evaluation pipeline, "
                               "which writes the weight set to serve")
        return read_artifact(self._path)

    def save(self, data: dict) -> None:
        """Replace the folder with ``data`` (atomically, by rename)."""
        replace_folder(self._path, lambda staging: write_artifact(staging, data))

    def _exists(self) -> bool:
        return (self._path / WEIGHTS_FILE).is_file()
