"""Kedro datasets for a CSV table that a generator node writes in chunks
(:mod:`visrec.core.chunks`), and for what an interrupted run of it left.

Kedro 1.7 saves each chunk a generator-function node yields as it comes, but gives a
dataset no sign that a chunk is the last one (its ``after_node_run`` hook runs after the
node's first chunk is made and before any is saved). So the node says it: its final chunk
is a :class:`~visrec.core.chunks.TableChunk` with ``last=True``, and that save renames the
finished table into place.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError
from kedro_datasets._typing import TablePreview

from visrec.core.chunks import ChunkedCSV, PartialTable, TableChunk


class ChunkedCSVDataset(AbstractDataset[TableChunk, pd.DataFrame]):
    """A CSV table saved chunk by chunk into ``<filepath>.partial``, renamed to
    ``filepath`` by the last chunk; loading reads the finished table.

    Example catalog entry::

        predictions:
          type: visrec.datasets.ChunkedCSVDataset
          filepath: data/07_model_output/predictions.csv
          text_columns: [path, "label_*"]
          load_args: {keep_default_na: false}
    """

    def __init__(self, filepath: str, load_args: dict[str, Any] | None = None,
                 text_columns: list[str] | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        """Create the dataset.

        Args:
            filepath: The finished table.
            load_args: Keyword arguments of ``pandas.read_csv``.
            text_columns: Columns read as text (shell patterns such as ``label_*``), so
                that class names such as ``01`` stay names.
            metadata: Free-form metadata, ignored by Kedro.
        """
        self._table = ChunkedCSV(Path(filepath))
        self._load_args = dict(load_args or {})
        self._text_columns = list(text_columns or [])
        self.metadata = metadata

    def load(self) -> pd.DataFrame:
        """The finished table."""
        path = self._table.path
        if not path.is_file():
            raise DatasetError(f"no file at '{path}': run the pipeline that writes it")
        header = pd.read_csv(path, nrows=0).columns
        text = {name: str for name in header
                if any(fnmatchcase(name, pattern) for pattern in self._text_columns)}
        return pd.read_csv(path, **{**self._load_args,
                                    "dtype": text | self._load_args.get("dtype", {})})

    def save(self, data: TableChunk) -> None:
        """Append a chunk; the chunk marked ``last`` completes the table."""
        if not isinstance(data, TableChunk):
            raise DatasetError(f"{self._table.path}: expected a TableChunk (a chunk of a "
                               f"generator node), got {type(data).__name__}")
        try:
            self._table.append(data)
        except ValueError as error:
            raise DatasetError(str(error)) from error

    def preview(self, nrows: int = 5) -> TablePreview:
        """The first ``nrows`` rows of the finished table, for ``kedro viz``."""
        return TablePreview(self.load().head(nrows).to_dict(orient="split"))

    def _exists(self) -> bool:
        return self._table.path.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._table.path), "text_columns": self._text_columns}


class PartialCSVDataset(AbstractDataset[None, PartialTable]):
    """What an interrupted run left in a :class:`ChunkedCSVDataset`'s partial file: the
    run's identity and the key column of the committed rows. Load only: a node cannot
    take its own output, so the resumed node reads it through this second entry.

    Example catalog entry::

        predictions_partial:
          type: visrec.datasets.PartialCSVDataset
          filepath: data/07_model_output/predictions.csv
    """

    def __init__(self, filepath: str, key_column: str = "path",
                 metadata: dict[str, Any] | None = None) -> None:
        """Create the dataset.

        Args:
            filepath: The finished table (the partial file lies beside it).
            key_column: The column that names a row (a resumed run skips those names).
            metadata: Free-form metadata, ignored by Kedro.
        """
        self._table = ChunkedCSV(Path(filepath))
        self._key_column = key_column
        self.metadata = metadata

    def load(self) -> PartialTable:
        """The committed rows' keys and their run (empty when no run was interrupted)."""
        return self._table.partial(self._key_column)

    def save(self, data: None) -> None:
        """Refused: the table's own dataset writes the partial file."""
        raise DatasetError(f"'{self._table.partial_path}' is written through the "
                           "ChunkedCSVDataset of the same file")

    def _exists(self) -> bool:
        return True  # no partial file loads as an empty PartialTable

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._table.path), "key_column": self._key_column}
