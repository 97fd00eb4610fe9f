"""Kedro dataset of the database an Optuna study lives in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError
from kedro_datasets._typing import TablePreview


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

    def preview(self) -> TablePreview:
        """The studies in the file: name, trials, best value, for ``kedro viz``."""
        import optuna  # noqa: PLC0415 - loaded only when a preview is asked for

        if not self._filepath.is_file():
            raise DatasetError(f"no study at '{self._filepath}': run the tuning pipeline")
        summaries = optuna.get_all_study_summaries(self.load(), include_best_trial=True)
        return TablePreview({
            "columns": ["study", "trials", "best trial", "best value"],
            "index": list(range(len(summaries))),
            "data": [[summary.study_name, summary.n_trials,
                      summary.best_trial.number if summary.best_trial else None,
                      summary.best_trial.value if summary.best_trial else None]
                     for summary in summaries]})

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
