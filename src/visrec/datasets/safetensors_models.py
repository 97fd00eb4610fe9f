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
        models = {}
        for folder in sorted(p for p in self._path.iterdir() if (p / WEIGHTS_FILE).is_file()):
            config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
            models[folder.name] = {"weights": load_file(folder / WEIGHTS_FILE), "config": config}
        return models

    def save(self, data: dict[str, dict]) -> None:
        """Replace the folder's weight sets with ``data`` (atomically, by rename)."""
        bad = [name for name in data if not _NAME.match(name)]
        if bad:
            raise DatasetError(f"weight-set names {bad} must use letters, digits, '_', '.', '-'")

        def write(staging: Path) -> None:
            for name, artifact in data.items():
                folder = staging / name
                folder.mkdir()
                save_file(artifact["weights"], folder / WEIGHTS_FILE)
                (folder / CONFIG_FILE).write_text(
                    json.dumps(artifact["config"], indent=2, sort_keys=True) + "\n",
                    encoding="utf-8")

        replace_folder(self._path, write)

    def _exists(self) -> bool:
        return self._path.is_dir() and any(self._path.glob(f"*/{WEIGHTS_FILE}"))
