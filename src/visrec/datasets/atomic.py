"""Kedro dataset wrapper that makes any single-file dataset's save atomic.

The wrapped dataset saves to a temporary file beside the target, which then replaces
the target with one rename (``os.replace``, atomic on POSIX). A crash mid-save leaves
the previous file whole instead of a truncated one.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset


class AtomicDataset(AbstractDataset[Any, Any]):
    """Wrap a file dataset so that a save is all or nothing.

    Example catalog entry::

        metrics:
          type: visrec.datasets.AtomicDataset
          filepath: data/08_reporting/metrics.json
          dataset:
            type: json.JSONDataset
            save_args: {indent: 2}
    """

    def __init__(self, filepath: str, dataset: str | dict[str, Any],
                 metadata: dict[str, Any] | None = None) -> None:
        """Create the dataset.

        Args:
            filepath: Where the file lives; passed to the wrapped dataset.
            dataset: The wrapped dataset's type name, or its configuration without filepath.
            metadata: Free-form metadata, ignored by Kedro.
        """
        self._filepath = Path(filepath)
        self._config = {"type": dataset} if isinstance(dataset, str) else dict(dataset)
        self._target = self._dataset_at(self._filepath)
        self.metadata = metadata

    def _dataset_at(self, path: Path) -> AbstractDataset:
        return AbstractDataset.from_config(f"atomic:{self._filepath.name}",
                                           {**self._config, "filepath": str(path)})

    def load(self) -> Any:
        """Load through the wrapped dataset."""
        return self._target.load()

    def save(self, data: Any) -> None:
        """Save to a temporary file beside the target, then rename it over the target."""
        # Same folder (a rename across file systems is not atomic) and same suffix (some
        # writers, such as matplotlib's, choose the format from it).
        temporary = self._filepath.with_name(
            f".{self._filepath.stem}.{uuid.uuid4().hex[:8]}.tmp{self._filepath.suffix}")
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._dataset_at(temporary).save(data)
            os.replace(temporary, self._filepath)
        finally:
            temporary.unlink(missing_ok=True)

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "dataset": self._config.get("type")}
