"""Kedro datasets for the folders that training writes into while it runs.

Training saves a checkpoint after every epoch and logs metrics as it goes, long
before its node returns. These datasets hand the node the *place* to write, declared
in the catalog like any other data: loading gives a small handle, never file
contents, and Kedro never saves to them.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from kedro.io import DatasetError
from kedro_datasets._typing import JSONPreview

from visrec.core.train import CheckpointStore, LiveLog
from visrec.datasets.folder import FolderDataset

Handle = TypeVar("Handle")


class _WrittenByTraining(FolderDataset[Handle, None], Generic[Handle]):
    """A folder training writes as it runs: an input of the node, never an output."""

    def save(self, data: None) -> None:
        """Refused: training writes through the loaded handle."""
        raise DatasetError(f"'{self._path}' is written by training as it runs; "
                           "it is an input of the node, not an output")


class CheckpointDataset(_WrittenByTraining[CheckpointStore]):
    """The checkpoint folder of training (``resume: auto`` continues from it).

    Example catalog entry::

        training_checkpoints:
          type: visrec.datasets.CheckpointDataset
          path: data/06_models/checkpoints
    """

    def load(self) -> CheckpointStore:
        """A handle on the folder (which may not exist yet)."""
        return CheckpointStore(self._path)


class LiveDataset(_WrittenByTraining[LiveLog]):
    """The dvclive folder of training's per-epoch metrics.

    Example catalog entry::

        training_live:
          type: visrec.datasets.LiveDataset
          path: data/08_reporting/dvclive
    """

    def load(self) -> LiveLog:
        """A logger writing into the folder."""
        return LiveLog(self._path)

    def preview(self) -> JSONPreview:
        """The last epoch's metrics (dvclive's ``metrics.json``), for ``kedro viz``."""
        metrics = self._path / "metrics.json"
        if not metrics.is_file():
            raise DatasetError(f"no file at '{metrics}': run the training that writes it")
        return JSONPreview(metrics.read_text(encoding="utf-8"))
