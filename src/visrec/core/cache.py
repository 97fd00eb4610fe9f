"""The packed image cache: every valid image decoded once, resized, and stored as raw uint8.

A cache is a folder with two kinds of files:

- ``index.parquet``: one row per checked file (path, size, modification time, content
  hash, format, mode, size in pixels, quarantine reason, and its ``slot`` in the pool).
  The cache's settings and the name and length of its pool ride in the parquet metadata,
  so writing this one file (to a temporary name, then a rename) commits the whole cache.
- ``pixels-<generation>.u8``: the pool, ``slots x resolution x resolution x channels``
  bytes. It is only ever appended to; slots past the committed length (a crash mid-run)
  are cut off when the cache is next updated. Compaction writes a new generation.

Training memory-maps the pool and reads ``pool[slot]``: no JPEG or PNG decoding per epoch.
Re-running ingestion checks each file by path, size and modification time; only new or
changed files are read, and a changed file whose bytes hash as before is not decoded.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from visrec.core.images import Inspection, InspectSettings, inspect_files

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the pixels or the index change meaning: caches are rebuilt
INDEX_FILE = "index.parquet"
METADATA_KEY = b"visrec.image_cache"
INDEX_COLUMNS = {"path": "str", "bytes": "int64", "mtime_ns": "int64", "hash": "str",
                 "format": "str", "mode": "str", "width": "int64", "height": "int64",
                 "reason": "str", "detail": "str", "slot": "int64"}
CHUNK_FILES = 256  # files per task sent to a worker process
TASKS_PER_WORKER = 4  # tasks queued per worker: bounds the results held in memory
COMPACT_WHEN_DEAD = 0.5  # rewrite the pool when half its slots belong to removed files
# What a check finds in a file; kept from the last run when the bytes hash as before.
CHECKED_COLUMNS = ["hash", "format", "mode", "width", "height", "reason", "detail", "slot"]


def empty_index() -> pd.DataFrame:
    """An index with no rows and the right column types."""
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in INDEX_COLUMNS.items()})


@dataclass
class ImageCache:
    """A packed image cache: its folder, settings, index and pool.

    Attributes:
        folder: Where the cache lives.
        settings: Pixel limit, resolution (0: no pixels cached) and channels.
        index: One row per checked file; see :data:`INDEX_COLUMNS`.
        pool: File name of the pixel pool inside ``folder``, or None when pixels are not
            cached (files are then read by the loaders' workers).
        slots: Committed images in the pool.
        generation: Counts pool rewrites; names the pool file.
    """

    folder: Path
    settings: InspectSettings
    index: pd.DataFrame = field(default_factory=empty_index)
    pool: str | None = None
    slots: int = 0
    generation: int = 0
    _pixels: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def slot_shape(self) -> tuple[int, int, int]:
        """``(resolution, resolution, channels)`` of one cached image."""
        side = self.settings.resolution
        return side, side, self.settings.channels

    @property
    def slot_bytes(self) -> int:
        """Bytes of one cached image."""
        return int(np.prod(self.slot_shape))

    @property
    def enabled(self) -> bool:
        """Whether pixels are cached (else images are read from their files)."""
        return self.pool is not None

    @property
    def pixels(self) -> np.ndarray:
        """The pool as a read-only ``slots x H x W x C`` uint8 array, memory-mapped."""
        if self.pool is None:
            raise ValueError(f"image cache {self.folder} holds no pixels (cache disabled)")
        if self._pixels is None:
            shape = (self.slots, *self.slot_shape)
            self._pixels = (np.zeros(shape, np.uint8) if self.slots == 0 else
                            np.memmap(self.folder / self.pool, np.uint8, "r", shape=shape))
        return self._pixels

    def __getstate__(self) -> dict:
        # Loader workers and Kedro's MemoryDataset copy this object: map the pool anew
        # in each process instead of pickling its pixels.
        return {**self.__dict__, "_pixels": None}

    def metadata(self) -> dict:
        """The settings and pool description stored in the index file."""
        return {"format_version": FORMAT_VERSION, "settings": self.settings._asdict(),
                "pool": self.pool, "slots": self.slots, "generation": self.generation}


def read_cache(folder: str | Path, settings: InspectSettings | None = None) -> ImageCache:
    """Open the cache in ``folder``; a missing or unreadable one opens empty.

    Args:
        folder: The cache folder.
        settings: Used for an empty cache (None: zeros until the first update).
    """
    folder = Path(folder)
    blank = ImageCache(folder, settings or InspectSettings(0, 0, 3))
    path = folder / INDEX_FILE
    if not path.is_file():
        return blank
    try:
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {})[METADATA_KEY])
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format version {meta.get('format_version')}, "
                             f"this visrec reads {FORMAT_VERSION}")
        cache = ImageCache(folder, InspectSettings(**meta["settings"]),
                           table.to_pandas().astype(INDEX_COLUMNS), meta["pool"],
                           meta["slots"], meta["generation"])
    except (OSError, KeyError, TypeError, ValueError, pa.ArrowException) as error:
        logger.warning("image cache %s is unreadable (%s); it will be rebuilt", path, error)
        return blank
    pool_size = 0 if cache.pool is None else _file_size(folder / cache.pool)
    if pool_size < cache.slots * cache.slot_bytes:
        logger.warning("image cache %s: its pool is shorter than its index; it will be "
                       "rebuilt", folder)
        return blank
    return cache


def _file_size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else -1


def write_cache(cache: ImageCache) -> None:
    """Commit ``cache``: write its index with one rename, then delete stale pool files."""
    cache.folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(cache.index.astype(INDEX_COLUMNS), preserve_index=False)
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[METADATA_KEY] = json.dumps(cache.metadata()).encode()
    temporary = cache.folder / f".{INDEX_FILE}.{os.getpid()}.tmp"
    try:
        pq.write_table(table.replace_schema_metadata(schema_meta), temporary)
        os.replace(temporary, cache.folder / INDEX_FILE)
    finally:
        temporary.unlink(missing_ok=True)
    for stale in cache.folder.glob("pixels-*.u8"):
        if stale.name != cache.pool:
            stale.unlink()


def _pool_name(generation: int) -> str:
    return f"pixels-{generation:04d}.u8"


def _chunks(paths: np.ndarray, hashes: np.ndarray, size: int
            ) -> Iterator[list[tuple[str, str]]]:
    """``(path, previous hash)`` pairs, ``size`` at a time: only chunks in flight exist."""
    for start in range(0, len(paths), size):
        yield list(zip(paths[start:start + size], hashes[start:start + size], strict=True))


class _Workers:
    """Processes that check files, surviving a decoder that crashes one of them.

    A crafted or corrupt file can crash Pillow's C code and kill its worker. When that
    happens every chunk in flight is checked again one file per task in a fresh pool; the
    file whose task kills a worker again is quarantined as ``unreadable``.
    """

    def __init__(self, root: Path, settings: InspectSettings, workers: int) -> None:
        self.root, self.settings, self.workers = str(root), settings, workers
        self.executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        # "spawn": the parent may hold torch's threads; forking it could deadlock a worker.
        return ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"))

    def started(self) -> bool:
        """Whether worker processes can run here at all (a script read from stdin, for
        one, cannot start them); if not, the pool is shut and checks run in this process."""
        try:
            self.executor.submit(os.getpid).result()
        except BrokenProcessPool:
            logger.warning("worker processes could not start; checking files in this one")
            self.executor.shutdown(wait=False, cancel_futures=True)
            return False
        return True

    def restart(self) -> None:
        """Replace a broken pool by a fresh one."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.executor = self._start()

    def submit(self, chunk: list[tuple[str, str]]) -> Future:
        """Check ``chunk`` in a worker; a pool that broke already gives a failed future."""
        try:
            return self.executor.submit(inspect_files, self.root, chunk, self.settings)
        except BrokenProcessPool as error:
            failed: Future = Future()
            failed.set_exception(error)
            return failed

    def collect(self, pending: deque[tuple[list[tuple[str, str]], Future]]
                ) -> list[Inspection]:
        """The results of the oldest chunk in flight (of all of them, after a crash)."""
        chunk, future = pending.popleft()
        try:
            return future.result()
        except BrokenProcessPool:
            in_flight = [chunk, *(waiting for waiting, _ in pending)]
            pending.clear()
            logger.warning("a worker process died checking one of %d files; checking them "
                           "one at a time", sum(map(len, in_flight)))
            self.restart()
            return [found for each in in_flight for item in each for found in self._alone(item)]

    def _alone(self, item: tuple[str, str]) -> list[Inspection]:
        try:
            return self.submit([item]).result()
        except BrokenProcessPool:
            self.restart()
            return [Inspection(item[0], "", "", "", 0, 0, "unreadable",
                               "the image decoder crashed on this file", None)]


def _inspect_chunks(root: Path, paths: np.ndarray, hashes: np.ndarray,
                    settings: InspectSettings, workers: int,
                    chunk_files: int) -> Iterator[list[Inspection]]:
    """Inspect the files chunk by chunk, in order, over ``workers`` processes when worth it.

    At most ``TASKS_PER_WORKER`` chunks per worker are in flight, so the results waiting
    in memory do not grow with the number of files.
    """
    chunks = _chunks(paths, hashes, chunk_files)
    if workers <= 1 or len(paths) <= 2 * chunk_files:
        for chunk in chunks:
            yield inspect_files(str(root), chunk, settings)
        return
    pool = _Workers(root, settings, workers)
    if not pool.started():
        for chunk in chunks:
            yield inspect_files(str(root), chunk, settings)
        return
    try:
        pending: deque[tuple[list[tuple[str, str]], Future]] = deque()
        for chunk in chunks:
            pending.append((chunk, pool.submit(chunk)))
            if len(pending) >= workers * TASKS_PER_WORKER:
                yield pool.collect(pending)
        while pending:
            yield pool.collect(pending)
    finally:
        pool.executor.shutdown(cancel_futures=True)


@dataclass
class UpdateStats:
    """What one cache update did; for the log, never for the report (it varies by run)."""

    unchanged: int = 0
    checked: int = 0
    decoded: int = 0
    removed: int = 0
    compacted: bool = False


def update_cache(previous: ImageCache, root: Path, files: pd.DataFrame,
                 settings: InspectSettings, workers: int = 1,
                 chunk_files: int = CHUNK_FILES) -> tuple[ImageCache, UpdateStats]:
    """Bring the cache up to date with ``files``, appending new images to the pool.

    Args:
        previous: The cache as last committed (possibly empty).
        root: Folder the paths are relative to.
        files: Unique ``path``, ``bytes``, ``mtime_ns`` of the files to check.
        settings: Pixel limit and cache resolution (0: check without caching pixels);
            when they differ from the previous cache's, every file is checked anew.
        workers: Processes that check files.
        chunk_files: Files per task.

    Returns:
        ``(cache, stats)``: the new cache, not yet committed (see :func:`write_cache`).
    """
    stats = UpdateStats()
    if previous.settings != settings:  # another resolution, limit or channels: start over
        previous = ImageCache(previous.folder, settings,
                              generation=previous.generation + (previous.pool is not None))
    old = previous.index.set_index("path")
    known = files.merge(old, left_on="path", right_index=True, how="left",
                        suffixes=("", "_old"))
    same = (known["bytes"] == known["bytes_old"]) & (known["mtime_ns"] == known["mtime_ns_old"])
    stats.unchanged = int(same.sum())
    stats.removed = int((~previous.index["path"].isin(files["path"])).sum())
    kept = previous.index[previous.index["path"].isin(files.loc[same.to_numpy(), "path"])]
    todo = known.loc[~same.to_numpy(), ["path", "bytes", "mtime_ns", "hash"]]
    cache = replace(previous, _pixels=None)
    if settings.resolution and cache.pool is None:
        cache.pool, cache.slots = _pool_name(cache.generation), 0
    rows = _check(cache, root, todo, old, settings, workers, chunk_files, stats)
    cache.index = (pd.concat([kept, rows], ignore_index=True) if len(rows) else kept)
    cache.index = cache.index.sort_values("path", ignore_index=True).astype(INDEX_COLUMNS)
    live = int((cache.index["slot"] >= 0).sum())
    if cache.pool is not None and cache.slots and live < cache.slots * (1 - COMPACT_WHEN_DEAD):
        cache = _compact(cache)
        stats.compacted = True
    return cache, stats


def _check(cache: ImageCache, root: Path, todo: pd.DataFrame, old: pd.DataFrame,
           settings: InspectSettings, workers: int, chunk_files: int,
           stats: UpdateStats) -> pd.DataFrame:
    """Inspect ``todo``, append the new pixels to the pool, and return their index rows.

    Results become a small typed frame per chunk, so memory holds compact columns rather
    than a Python object per file.
    """
    if todo.empty:
        return empty_index()
    paths = todo["path"].to_numpy(dtype=object)
    hashes = todo["hash"].fillna("").to_numpy(dtype=object)
    frames = []
    pool = None
    if cache.pool is not None:
        cache.folder.mkdir(parents=True, exist_ok=True)
        pool = open(cache.folder / cache.pool, "a+b")  # closed in finally
        pool.truncate(cache.slots * cache.slot_bytes)  # drop slots never committed
    bar = tqdm(total=len(paths), desc="validating and caching", unit="file", disable=None,
               mininterval=1.0)
    try:
        for found in _inspect_chunks(root, paths, hashes, settings, workers, chunk_files):
            slots = np.full(len(found), -1, np.int64)
            for i, item in enumerate(found):
                if item.pixels is not None and pool is not None:
                    pool.write(item.pixels)
                    slots[i], cache.slots = cache.slots, cache.slots + 1
            frames.append(_frame(found, slots))
            bar.update(len(found))
    finally:
        bar.close()
        if pool is not None:
            pool.flush()
            os.fsync(pool.fileno())
            pool.close()
    rows = pd.concat(frames, ignore_index=True)
    stats.checked = len(rows)
    same = (rows["format"] == "same").to_numpy()
    stats.decoded = int((~same & (rows["reason"] == "").to_numpy()).sum())  # valid, new
    if same.any():  # touched, not changed: keep the old row and slot
        rows.loc[same, CHECKED_COLUMNS] = old.loc[rows.loc[same, "path"], CHECKED_COLUMNS
                                                  ].to_numpy()
    sizes = todo.set_index("path")
    rows["bytes"] = rows["path"].map(sizes["bytes"])
    rows["mtime_ns"] = rows["path"].map(sizes["mtime_ns"])
    return rows[list(INDEX_COLUMNS)]


def _frame(found: list[Inspection], slots: np.ndarray) -> pd.DataFrame:
    """The index rows of one chunk (without bytes and mtime_ns), as typed columns."""
    columns = {name: [getattr(item, name) for item in found]
               for name in ("path", "hash", "format", "mode", "width", "height", "reason",
                            "detail")}
    frame = pd.DataFrame(columns).astype(
        {name: INDEX_COLUMNS[name] for name in columns})
    frame["slot"] = slots
    return frame


def _compact(cache: ImageCache) -> ImageCache:
    """Copy the live slots into a new pool generation, in path order."""
    generation = cache.generation + 1
    live = cache.index["slot"] >= 0
    source = np.memmap(cache.folder / cache.pool, np.uint8, "r",
                       shape=(cache.slots, cache.slot_bytes))
    with open(cache.folder / _pool_name(generation), "wb") as target:
        for slot in cache.index.loc[live, "slot"]:
            target.write(source[slot].tobytes())
        target.flush()
        os.fsync(target.fileno())
    del source
    index = cache.index.copy()
    index.loc[live, "slot"] = np.arange(int(live.sum()))
    logger.info("image cache compacted: %d of %d slots kept", int(live.sum()), cache.slots)
    return ImageCache(cache.folder, cache.settings, index, _pool_name(generation),
                      int(live.sum()), generation)
