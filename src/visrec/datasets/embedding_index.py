"""Kedro dataset for a retrieval index (:class:`visrec.core.retrieval.EmbeddingIndex`).

Layout on disk::

    <path>/embeddings.safetensors   the reference embeddings (tensor ``embeddings``)
    <path>/items.parquet            path and label of each reference, in the same order
    <path>/index.json               the reference folder and the embedder that made it

Saving writes a new folder beside the old one and swaps it in by renames.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import DatasetError

from visrec.core.retrieval import EmbeddingIndex, IndexInfo
from visrec.datasets.folder import FolderDataset, replace_folder

EMBEDDINGS_FILE, ITEMS_FILE, INFO_FILE = "embeddings.safetensors", "items.parquet", "index.json"


class EmbeddingIndexDataset(FolderDataset[EmbeddingIndex | None, EmbeddingIndex]):
    """An embedding index as a folder. Example catalog entry::

        embedding_index:
          type: visrec.datasets.EmbeddingIndexDataset
          path: data/06_models/embedding_index

    With ``optional: true`` loading a folder that does not exist gives None (the state a
    pipeline may replace), else an error that says which pipeline writes it.
    """

    def __init__(self, path: str, optional: bool = False,
                 metadata: dict[str, Any] | None = None) -> None:
        """Create the dataset.

        Args:
            path: The folder.
            optional: Load None when there is no index yet.
            metadata: Free-form metadata, ignored by Kedro.
        """
        super().__init__(path, metadata)
        self._optional = optional

    def load(self) -> EmbeddingIndex | None:
        """The index in the folder (None when absent and optional)."""
        from safetensors.torch import load_file  # noqa: PLC0415

        if not self._exists():
            if self._optional:
                return None
            raise DatasetError(f"no embedding index at '{self._path}': run the metric_learning "
                               "pipeline, or retrieve with retrieve.reference=FOLDER")
        info = IndexInfo.from_json(json.loads((self._path / INFO_FILE).read_text("utf-8")))
        items = pd.read_parquet(self._path / ITEMS_FILE)
        return EmbeddingIndex(load_file(self._path / EMBEDDINGS_FILE)["embeddings"], items, info)

    def save(self, data: EmbeddingIndex) -> None:
        """Replace the folder with ``data`` (atomically, by rename)."""
        from safetensors.torch import save_file  # noqa: PLC0415

        def write(staging: Path) -> None:
            save_file({"embeddings": data.embeddings.float().contiguous()},
                      staging / EMBEDDINGS_FILE)
            data.items.to_parquet(staging / ITEMS_FILE, index=False)
            (staging / INFO_FILE).write_text(json.dumps(data.info.to_json(), indent=2) + "\n",
                                             encoding="utf-8")

        replace_folder(self._path, write)

    def _exists(self) -> bool:
        return all((self._path / name).is_file()
                   for name in (EMBEDDINGS_FILE, ITEMS_FILE, INFO_FILE))
