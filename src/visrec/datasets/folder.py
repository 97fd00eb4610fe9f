"""Base of visrec's datasets that own a folder rather than a single file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Generic, TypeVar

from kedro.io import AbstractDataset

Loaded = TypeVar("Loaded")
Saved = TypeVar("Saved")


class FolderDataset(AbstractDataset[Loaded, Saved], Generic[Loaded, Saved]):
    """A Kedro dataset stored as a folder of files at ``path``."""

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        """Create the dataset.

        Args:
            path: The folder.
            metadata: Free-form metadata, ignored by Kedro.
        """
        self._path = Path(path)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
