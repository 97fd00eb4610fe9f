"""Kedro dataset for a file's raw bytes (exported models); wrap it in AtomicDataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError


class BytesDataset(AbstractDataset[bytes, bytes]):
    """A file saved and loaded as ``bytes`` (an ONNX graph, a TorchScript archive).

    Example catalog entry, atomic through the wrapper::

        onnx_model:
          type: visrec.datasets.AtomicDataset
          filepath: data/06_models/exported/model.onnx
          dataset: visrec.datasets.BytesDataset
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        """Create the dataset.

        Args:
            filepath: The file.
            metadata: Free-form metadata, ignored by Kedro.
        """
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> bytes:
        """The file's bytes."""
        if not self._filepath.is_file():
            raise DatasetError(f"no file at '{self._filepath}'")
        return self._filepath.read_bytes()

    def save(self, data: bytes) -> None:
        """Write ``data`` to the file."""
        if not isinstance(data, bytes | bytearray):
            raise DatasetError(f"{self._filepath}: expected bytes, got {type(data).__name__}")
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        self._filepath.write_bytes(data)

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
