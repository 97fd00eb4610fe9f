"""Kedro dataset wrapper that makes any single-file dataset's save atomic.

The wrapped dataset saves to a temporary file beside the target, which then replaces
the target with one rename (``os.replace``, atomic on POSIX). A crash mid-save leaves
the previous file whole instead of a truncated one.

To ``kedro viz`` the wrapper is the dataset it wraps: an entry is an instance of a
subclass named after the wrapped type (``AtomicDataset[CSVDataset]``), which
forwards the wrapped dataset's ``preview`` (with its signature, from which kedro viz
reads the kind of preview: a table, JSON, an image) when the wrapped type has one.
"""

from __future__ import annotations

import functools
import os
import uuid
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset
from kedro.io.core import parse_dataset_definition


def _type_name(dataset: str | dict[str, Any]) -> str:
    """The wrapped dataset's type as the catalog names it (``pandas.CSVDataset``)."""
    name = dataset if isinstance(dataset, str) else dataset.get("type")
    if not isinstance(name, str):
        raise ValueError(f"AtomicDataset: dataset = {dataset!r} names no type; expected a "
                         "type name such as 'pandas.CSVDataset' or a mapping with 'type'")
    return name


@functools.cache
def _atomic_class(type_name: str) -> type[AtomicDataset]:
    """The subclass of :class:`AtomicDataset` that wraps ``type_name``, made once."""
    wrapped, _ = parse_dataset_definition({"type": type_name})
    namespace: dict[str, Any] = {
        "__module__": AtomicDataset.__module__,
        # No dot in the name: kedro viz shows a type as its first and last dotted parts.
        "__qualname__": f"AtomicDataset[{wrapped.__name__}]",
        "__doc__": f"{wrapped.__name__} with all-or-nothing saves.",
    }
    if callable(getattr(wrapped, "preview", None)):
        @functools.wraps(wrapped.preview)  # type: ignore[attr-defined]
        def preview(self: AtomicDataset, *args: Any, **kwargs: Any) -> Any:
            return self._target.preview(*args, **kwargs)  # type: ignore[attr-defined]

        namespace["preview"] = preview
    return type(namespace["__qualname__"], (AtomicDataset,), namespace)


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

    def __new__(cls, filepath: str, dataset: str | dict[str, Any],
                metadata: dict[str, Any] | None = None) -> AtomicDataset:
        """An instance of the subclass for the wrapped type (see the module's docstring)."""
        made = _atomic_class(_type_name(dataset)) if cls is AtomicDataset else cls
        return super().__new__(made)

    def __reduce__(self) -> tuple[Any, ...]:
        # The subclasses are made at run time, so a copy is made through the constructor.
        return AtomicDataset, (str(self._filepath), self._config, self.metadata)

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
