"""Kedro dataset for the typed hand-offs between stages (:class:`visrec.core.records.Record`).

A record is saved as indented JSON and loaded back into its type, validated, so a node
receives the ingestion report or the balance plan as an object with named fields, and
``kedro viz`` shows it as a dataset like any other.
"""

from __future__ import annotations

import json
from importlib import import_module
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError
from kedro_datasets._typing import JSONPreview

from visrec.core.records import Record


def record_class(path: str) -> type[Record]:
    """The record type named by its dotted path, such as ``visrec.core.data.IngestionReport``.

    Raises:
        DatasetError: If the path names no :class:`Record` subclass.
    """
    module, _, name = path.rpartition(".")
    try:
        found = getattr(import_module(module), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise DatasetError(f"record_type = {path!r}: no such class ({error})") from error
    if not (isinstance(found, type) and issubclass(found, Record)):
        raise DatasetError(f"record_type = {path!r} is not a visrec.core.records.Record")
    return found


class RecordDataset(AbstractDataset[Record, Record]):
    """A record as a JSON file; wrap it in ``AtomicDataset`` for all-or-nothing saves.

    Example catalog entry::

        balance_plan:
          type: visrec.datasets.AtomicDataset
          filepath: data/05_model_input/balance_plan.json
          dataset:
            type: visrec.datasets.RecordDataset
            record_type: visrec.core.balance.BalancePlan
    """

    def __init__(self, filepath: str, record_type: str,
                 metadata: dict[str, Any] | None = None) -> None:
        """Create the dataset.

        Args:
            filepath: The JSON file.
            record_type: Dotted path of the record's class.
            metadata: Free-form metadata, ignored by Kedro.
        """
        self._filepath = Path(filepath)
        self._type_path = record_type
        self._type = record_class(record_type)
        self.metadata = metadata

    def load(self) -> Record:
        """The record in the file, validated against its type."""
        if not self._filepath.is_file():
            raise DatasetError(f"no file at '{self._filepath}': run the stage that writes it")
        try:
            return self._type.from_json(json.loads(self._filepath.read_text(encoding="utf-8")))
        except ValueError as error:  # not JSON, or pydantic's ValidationError: an older file
            raise DatasetError(f"'{self._filepath}' is not a {self._type.__name__} of this "
                               f"visrec (rerun the stage that writes it): {error}") from error

    def save(self, data: Record) -> None:
        """Write ``data`` as indented JSON."""
        if not isinstance(data, self._type):
            raise DatasetError(f"{self._filepath}: expected a {self._type.__name__}, got "
                               f"{type(data).__name__}")
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        self._filepath.write_text(json.dumps(data.to_json(), indent=2) + "\n",
                                  encoding="utf-8")

    def preview(self) -> JSONPreview:
        """The record's JSON, for ``kedro viz``."""
        return JSONPreview(json.dumps(self.load().to_json()))

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "record_type": self._type_path}
