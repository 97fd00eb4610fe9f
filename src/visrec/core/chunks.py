"""Tables written in chunks as a run makes them: readable after a crash, and resumable.

A :class:`ChunkedCSV` at ``<table>.csv`` appends each chunk of rows to
``<table>.csv.partial`` in one write, syncs it, and then records in
``<table>.csv.partial.json`` how many rows and bytes of the partial file are committed
(the record is written to a temporary file and renamed over the old one). The run's last
chunk renames the partial file over ``<table>.csv``, so the finished table appears at
once and complete, and a crash before it leaves the previous ``<table>.csv`` as it was.

After a crash the partial file holds the rows done so far, whole: the first ``rows`` rows
that the record names (``pd.read_csv(partial, nrows=rows)``). Bytes past the committed
ones (a write that the crash cut short) are cut off before the next chunk is appended.

Each chunk carries the identity of the run that makes it (for predictions: the model's
digest, the input, the settings that change the rows). A chunk of the same run continues
the partial file; a chunk of another run starts it anew. A run started again after a
crash reads :meth:`ChunkedCSV.partial` to skip the rows already done.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from visrec.core.records import Record

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
STATE_SUFFIX = ".partial.json"


def plain_run(run: Mapping[str, Any]) -> dict[str, Any]:
    """``run`` as it reads back from JSON (tuples as lists), so that identities compare."""
    return json.loads(json.dumps(run, sort_keys=True))


@dataclass(frozen=True)
class TableChunk:
    """Rows to append to a chunked table.

    Attributes:
        rows: The rows; every chunk of a run has the same columns.
        run: What makes the rows, as JSON data: a chunk of another run than the one that
            wrote the partial file starts it anew.
        last: The run's final chunk (it may have no rows): the table is then complete
            and renamed into place.
    """

    rows: pd.DataFrame
    run: Mapping[str, Any]
    last: bool = False


@dataclass(frozen=True)
class PartialTable:
    """What an interrupted run left in a chunked table: the run's identity and the key
    column of its committed rows (no run and no keys when nothing was left)."""

    run: dict[str, Any] | None = None
    keys: tuple[str, ...] = ()

    def done_by(self, run: Mapping[str, Any]) -> frozenset[str]:
        """The keys ``run`` has already written (none when another run left them)."""
        same = self.run is not None and self.run == plain_run(run)
        return frozenset(self.keys) if same else frozenset()


class PartialState(Record):
    """``<table>.csv.partial.json``: whose rows the partial file holds, and how many of
    them (and of its bytes, header included) are committed."""

    run: dict[str, Any]
    columns: tuple[str, ...]
    rows: int
    bytes: int


class ChunkedCSV:
    """A CSV table written chunk by chunk (see the module's documentation)."""

    def __init__(self, path: Path) -> None:
        """Create the writer of the table at ``path`` (nothing is written yet)."""
        self.path = path
        self.partial_path = path.with_name(path.name + PARTIAL_SUFFIX)
        self.state_path = path.with_name(path.name + STATE_SUFFIX)

    def state(self) -> PartialState | None:
        """The committed state of the partial file; None when there is no partial file,
        no readable record, or fewer bytes than the record says (then nothing of it is
        trusted)."""
        try:
            state = PartialState.from_json(json.loads(self.state_path.read_text("utf-8")))
            size = self.partial_path.stat().st_size
        except (OSError, ValueError):  # no file, or not a record of this visrec
            return None
        return state if size >= state.bytes else None

    def partial(self, key_column: str) -> PartialTable:
        """The run and the ``key_column`` values of the committed rows of the partial file."""
        state = self.state()
        if state is None or state.rows == 0:
            return PartialTable(None if state is None else state.run)
        keys = pd.read_csv(self.partial_path, usecols=[key_column], dtype=str,
                           keep_default_na=False, nrows=state.rows)[key_column]
        return PartialTable(state.run, tuple(keys))

    def append(self, chunk: TableChunk) -> None:
        """Append ``chunk``'s rows and commit them; the last chunk completes the table.

        Raises:
            ValueError: If the chunk's columns are not those its run wrote before.
        """
        run = plain_run(chunk.run)
        columns = tuple(str(name) for name in chunk.rows.columns)
        state = self.state()
        if state is None or state.run != run:
            state = self._start(run, columns, chunk.rows)
        elif state.columns != columns:
            raise ValueError(f"{self.partial_path}: a chunk with columns {list(columns)} "
                             f"cannot follow the columns {list(state.columns)}")
        body = chunk.rows.to_csv(index=False, header=False, lineterminator="\n")
        data = body.encode("utf-8")
        with self.partial_path.open("r+b") as file:
            file.truncate(state.bytes)  # bytes a crash left past the committed rows
            file.seek(state.bytes)
            file.write(data)  # one write per chunk: whole rows unless the write is cut
            file.flush()
            os.fsync(file.fileno())
        self._commit(state.model_copy(update={"rows": state.rows + len(chunk.rows),
                                              "bytes": state.bytes + len(data)}))
        if chunk.last:
            os.replace(self.partial_path, self.path)
            self.state_path.unlink()

    def _start(self, run: dict[str, Any], columns: tuple[str, ...],
               rows: pd.DataFrame) -> PartialState:
        """A new partial file holding the header; its state, committed."""
        if self.partial_path.exists():
            logger.info("%s: left by another run (another model, input or settings) or "
                        "not committed; starting it anew", self.partial_path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header = rows.head(0).to_csv(index=False, lineterminator="\n").encode("utf-8")
        with self.partial_path.open("wb") as file:
            file.write(header)
            file.flush()
            os.fsync(file.fileno())
        state = PartialState(run=run, columns=columns, rows=0, bytes=len(header))
        self._commit(state)
        return state

    def _commit(self, state: PartialState) -> None:
        """Write ``state`` beside the partial file (temporary file, then rename)."""
        temporary = self.state_path.with_name(f".{self.state_path.name}.tmp")
        temporary.write_text(json.dumps(state.to_json(), indent=1) + "\n", encoding="utf-8")
        os.replace(temporary, self.state_path)
