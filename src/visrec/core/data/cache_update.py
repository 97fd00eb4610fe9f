"""Bringing the packed cache up to date: new or changed files checked in parallel worker
processes and appended to the pool; unchanged ones kept; a pool of mostly dead slots
compacted. See :mod:`visrec.core.data.cache` for the layout on disk."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from visrec.core.data.cache import (
    INDEX_COLUMNS,
    ImageCache,
    empty_index,
    pool_name,
    write_cache,
)
from visrec.core.images import Inspection, InspectSettings, inspect_files
from visrec.core.progress import progress

logger = logging.getLogger(__name__)

CHUNK_FILES = 256  # files per task sent to a worker process
TASKS_PER_WORKER = 4  # tasks queued per worker: bounds the results held in memory
COMPACT_WHEN_DEAD = 0.5  # rewrite the pool when half its slots belong to removed files
COMMIT_SECONDS = 30.0  # ingestion commits the files checked so far this often
# What a check finds in a file; kept from the last run when the bytes hash as before.
CHECKED_COLUMNS = ["hash", "format", "mode", "width", "height", "reason", "detail", "slot"]


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
                 chunk_files: int = CHUNK_FILES, commit_seconds: float | None = None
                 ) -> tuple[ImageCache, UpdateStats]:
    """Bring the cache up to date with ``files``, appending new images to the pool.

    Args:
        previous: The cache as last committed (possibly empty).
        root: Folder the paths are relative to.
        files: Unique ``path``, ``bytes``, ``mtime_ns`` of the files to check.
        settings: Pixel limit and cache resolution (0: check without caching pixels);
            when they differ from the previous cache's, every file is checked anew.
        workers: Processes that check files.
        chunk_files: Files per task.
        commit_seconds: Commit the files checked so far (pool synced, then the index
            written) at most this often, so that a crash or a full disk keeps the work
            done; None: only the caller commits, at the end.

    Returns:
        ``(cache, stats)``: the new cache, not yet committed (see :func:`write_cache`).

    Raises:
        CacheDiskFull: If the disk fills while pixels are written (the files checked by
            the last commit are kept).
    """
    stats = UpdateStats()
    if previous.settings != settings:  # another resolution, limit or channels: start over
        previous = ImageCache(previous.folder, settings,
                              generation=previous.generation + (previous.pool is not None))
    old = previous.index.set_index("path")
    known = files.merge(old, left_on="path", right_index=True, how="left",
                        suffixes=("", "_old"))
    same = (known["bytes"] == known["bytes_old"]) & (known["mtime_ns"] == known["mtime_ns_old"])
    if previous.root and previous.root != str(root):
        # Another folder: the same path, size and time say nothing of the bytes. Each file
        # is hashed again; one whose bytes hash as before keeps its pixels (not decoded).
        logger.info("image cache: ingestion.root moved from %s to %s; every file is hashed "
                    "again", previous.root, root)
        same[:] = False
    stats.unchanged = int(same.sum())
    stats.removed = int((~previous.index["path"].isin(files["path"])).sum())
    kept = previous.index[previous.index["path"].isin(files.loc[same.to_numpy(), "path"])]
    todo = known.loc[~same.to_numpy(), ["path", "bytes", "mtime_ns", "hash"]]
    cache = replace(previous, root=str(root), _pixels=None)
    if settings.resolution and cache.pool is None:
        cache.pool, cache.slots = pool_name(cache.generation), 0

    def indexed(rows: pd.DataFrame) -> pd.DataFrame:
        """The kept rows and the files checked so far: the files not checked yet are
        left out, so a later run checks them."""
        index = pd.concat([kept, rows], ignore_index=True) if len(rows) else kept
        return index.sort_values("path", ignore_index=True).astype(INDEX_COLUMNS)

    def commit(rows: pd.DataFrame) -> None:
        write_cache(replace(cache, index=indexed(rows), _pixels=None))

    rows = _check(cache, root, todo, old, settings, workers, chunk_files, stats,
                  commit if commit_seconds is not None else None, commit_seconds or 0.0)
    cache.index = indexed(rows)
    live = int((cache.index["slot"] >= 0).sum())
    if cache.pool is not None and cache.slots and live < cache.slots * (1 - COMPACT_WHEN_DEAD):
        cache = _compact(cache)
        stats.compacted = True
    return cache, stats


class CacheDiskFull(OSError):
    """The disk filled while the packed cache was written."""


def _check(cache: ImageCache, root: Path, todo: pd.DataFrame, old: pd.DataFrame,
           settings: InspectSettings, workers: int, chunk_files: int,
           stats: UpdateStats, commit: Callable[[pd.DataFrame], None] | None = None,
           commit_seconds: float = 0.0) -> pd.DataFrame:
    """Inspect ``todo``, append the new pixels to the pool, and return their index rows;
    ``commit`` is given the rows so far every ``commit_seconds`` (the pool synced first).

    Results become a small typed frame per chunk, so memory holds compact columns rather
    than a Python object per file.
    """
    if todo.empty:
        return empty_index()
    paths = todo["path"].to_numpy(dtype=object)
    hashes = todo["hash"].fillna("").to_numpy(dtype=object)
    frames: list[pd.DataFrame] = []
    pool = None
    if cache.pool is not None:
        cache.folder.mkdir(parents=True, exist_ok=True)
        pool = open(cache.folder / cache.pool, "a+b")  # closed in finally
        pool.truncate(cache.slots * cache.slot_bytes)  # drop slots never committed
    bar = progress(total=len(paths), desc="validating and caching", unit="file", leave=True)
    last_commit, committed = time.monotonic(), 0
    try:
        for found in _inspect_chunks(root, paths, hashes, settings, workers, chunk_files):
            slots = np.full(len(found), -1, np.int64)
            for i, item in enumerate(found):
                if item.pixels is not None and pool is not None:
                    pool.write(item.pixels)
                    slots[i], cache.slots = cache.slots, cache.slots + 1
            frames.append(_frame(found, slots))
            bar.update(len(found))
            if commit is not None and time.monotonic() - last_commit >= commit_seconds:
                _sync(pool)
                commit(_finish(frames, todo, old))
                last_commit, committed = time.monotonic(), sum(map(len, frames))
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise CacheDiskFull(
            errno.ENOSPC, f"the disk is full writing the packed cache in {cache.folder} "
            f"({cache.slots * cache.slot_bytes / 1e9:.1f} GB of pixels); the {committed} "
            "files checked by the last commit are kept and the next run goes on from "
            "there. Free some space, or lower ingestion.cache.resolution, or set "
            "ingestion.cache.enabled: false (training then reads the files)") from None
    finally:
        bar.close()
        if pool is not None:
            with contextlib.suppress(OSError):  # a full disk: the last commit stands
                _sync(pool)
            pool.close()
    checked = pd.concat(frames, ignore_index=True)
    stats.checked = len(checked)
    same = (checked["format"] == "same").to_numpy()
    stats.decoded = int((~same & (checked["reason"] == "").to_numpy()).sum())  # valid, new
    return _finish(frames, todo, old)


def _sync(pool: BinaryIO | None) -> None:
    """Put the pool's bytes on disk (before an index that points at them)."""
    if pool is not None:
        pool.flush()
        os.fsync(pool.fileno())


def _finish(frames: list[pd.DataFrame], todo: pd.DataFrame, old: pd.DataFrame
            ) -> pd.DataFrame:
    """The index rows of the files checked so far: a file touched but not changed keeps
    its old row and slot; sizes and times from the listing."""
    rows = pd.concat(frames, ignore_index=True)
    same = (rows["format"] == "same").to_numpy()
    if same.any():
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
    if cache.pool is None:  # nothing cached, nothing to compact
        return cache
    generation = cache.generation + 1
    live = cache.index["slot"] >= 0
    source = np.memmap(cache.folder / cache.pool, np.uint8, "r",
                       shape=(cache.slots, cache.slot_bytes))
    with open(cache.folder / pool_name(generation), "wb") as target:
        for slot in cache.index.loc[live, "slot"]:
            target.write(source[slot].tobytes())
        target.flush()
        os.fsync(target.fileno())
    del source
    index = cache.index.copy()
    index.loc[live, "slot"] = np.arange(int(live.sum()))
    logger.info("image cache compacted: %d of %d slots kept", int(live.sum()), cache.slots)
    return ImageCache(cache.folder, cache.settings, index, pool_name(generation),
                      int(live.sum()), generation, cache.root)
