"""Kedro dataset of the database an Optuna study lives in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError


class OptunaStorageDataset(AbstractDataset[None, str]):
    """The SQLite file of the tuning study; loading gives its database URL.

    The study's trials write into the database as they run (that is what lets a killed
    search resume, and several processes share it), so the dataset is read-only: it tells
    the search where the database is, and ``kedro viz`` shows it as the study.

    Example catalog entry::

        tuning_study:
          type: visrec.datasets.OptunaStorageDataset
          filepath: data/07_model_output/tuning/study.db
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        """Create the dataset.

        Args:
            filepath: The SQLite file (made, with its folder, by the first trial).
            metadata: Free-form metadata, ignored by Kedro.
        """
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> str:
        """The SQLAlchemy URL of the file (its folder is made when missing)."""
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self._filepath.resolve()}"

    def save(self, data: None) -> None:
        """Refused: trials write the study themselves."""
        raise DatasetError(f"{self._filepath} is written by the study's trials, not saved")

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
