"""Tests of visrec.core.data.cache and .cache_update: the packed image cache, its updates,
compaction and recovery."""

from __future__ import annotations

import errno
import logging
import os
import pickle
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.core.crashing import inspect_or_die
from visrec.core import images as images_module
from visrec.core.data import (
    CACHE_INDEX_FILE,
    CacheDiskFull,
    CacheMismatch,
    ImageCache,
    check_manifest_cache,
    read_cache,
    stamp_manifest,
    update_cache,
    write_cache,
)
from visrec.core.data import cache_update as cache_update_module
from visrec.core.data.cache import INDEX_COLUMNS
from visrec.core.images import InspectSettings, fit_square, load_image

RESOLUTION = 8
SETTINGS = InspectSettings(max_pixels=10**8, resolution=RESOLUTION, channels=3)


@pytest.fixture
def images(tmp_path, png) -> Path:
    """Six noise PNGs of different sizes, and a file that is not an image."""
    root = tmp_path / "images"
    for i in range(6):
        png(root / f"{'ab'[i % 2]}/{i}.png", size=(10 + i, 9))
    (root / "b" / "bad.png").write_bytes(b"not an image")
    return root


def _files(root: Path) -> pd.DataFrame:
    """The cache's input: path, bytes, mtime_ns of every file under ``root``."""
    rows = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        info = path.stat()
        rows.append((path.relative_to(root).as_posix(), info.st_size, info.st_mtime_ns))
    return pd.DataFrame(rows, columns=["path", "bytes", "mtime_ns"])


def _update(root: Path, folder: Path, settings: InspectSettings = SETTINGS,
            **kwargs: int) -> tuple[ImageCache, object]:
    """One ingestion run: read the committed cache, update it, commit it."""
    cache, stats = update_cache(read_cache(folder), root, _files(root), settings, **kwargs)
    write_cache(cache)
    return cache, stats


def _slots(cache: ImageCache) -> dict[str, int]:
    return dict(zip(cache.index["path"], cache.index["slot"], strict=True))


def _assert_pixels_right(cache: ImageCache, root: Path) -> None:
    """Every live slot holds the image of its path, as fit_square of load_image sees it."""
    live = cache.index[cache.index["slot"] >= 0]
    assert len(live) > 0
    for path, slot in zip(live["path"], live["slot"], strict=True):
        expected = fit_square(load_image(root / path, cache.settings.channels),
                              cache.settings.resolution)
        np.testing.assert_array_equal(cache.pixels[slot], expected, err_msg=path)


def _touch(path: Path, seconds: int = 1000) -> None:
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + seconds * 10**9))


# --- round trip --------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [3, 1])
def test_round_trip_holds_every_valid_image(images, tmp_path, channels):
    settings = InspectSettings(10**8, RESOLUTION, channels)
    cache, stats = _update(images, tmp_path / "cache", settings)
    assert (stats.checked, stats.decoded, stats.unchanged, stats.removed) == (7, 6, 0, 0)
    reopened = read_cache(tmp_path / "cache")
    assert reopened.settings == settings
    assert (reopened.pool, reopened.slots, reopened.generation) == ("pixels-0000.u8", 6, 0)
    pd.testing.assert_frame_equal(reopened.index, cache.index)
    assert list(reopened.index.columns) == list(INDEX_COLUMNS)
    assert reopened.index["path"].tolist() == sorted(reopened.index["path"])
    assert sorted(reopened.index["slot"]) == [-1, 0, 1, 2, 3, 4, 5]
    assert reopened.pixels.shape == (6, RESOLUTION, RESOLUTION, channels)
    assert isinstance(reopened.pixels, np.memmap)
    assert (tmp_path / "cache" / "pixels-0000.u8").stat().st_size == 6 * RESOLUTION**2 * channels
    _assert_pixels_right(reopened, images)
    bad = reopened.index.set_index("path").loc["b/bad.png"]
    assert (bad["reason"], bad["slot"]) == ("not_an_image", -1)
    good = reopened.index.set_index("path").loc["a/0.png"]
    assert (good["format"], good["mode"], good["width"], good["height"]) == ("PNG", "RGB", 10, 9)
    assert good["bytes"] == (images / "a/0.png").stat().st_size


def test_check_only_cache_has_no_pool(images, tmp_path):
    cache, stats = _update(images, tmp_path / "cache", InspectSettings(10**8, 0, 3))
    assert (cache.enabled, cache.pool, cache.slots, stats.decoded) == (False, None, 0, 6)
    assert (cache.index["slot"] == -1).all()
    assert not list((tmp_path / "cache").glob("pixels-*"))
    assert read_cache(tmp_path / "cache").index["hash"].str.len().tolist() == [32] * 7
    with pytest.raises(ValueError, match="holds no pixels"):
        _ = cache.pixels


def test_missing_cache_opens_empty(tmp_path):
    cache = read_cache(tmp_path / "nothing here", SETTINGS)
    assert (cache.settings, cache.pool, cache.slots, len(cache.index)) == (SETTINGS, None, 0, 0)
    assert list(cache.index.columns) == list(INDEX_COLUMNS)
    assert (cache.index["slot"].dtype, cache.index["bytes"].dtype) == (np.int64, np.int64)


# --- re-runs -----------------------------------------------------------------------------


def test_rerun_with_nothing_changed_checks_nothing(images, tmp_path, monkeypatch):
    first, _ = _update(images, tmp_path / "cache")
    monkeypatch.setattr(images_module, "inspect_file", _must_not_inspect)
    again, stats = _update(images, tmp_path / "cache")
    assert (stats.checked, stats.unchanged, stats.decoded, stats.removed) == (0, 7, 0, 0)
    assert not stats.compacted
    pd.testing.assert_frame_equal(again.index, first.index)
    assert (again.pool, again.slots) == (first.pool, first.slots)


def _must_not_inspect(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("an unchanged file was opened")


def test_touched_file_is_hashed_not_decoded(images, tmp_path, monkeypatch):
    first, _ = _update(images, tmp_path / "cache")
    _touch(images / "a/2.png")
    monkeypatch.setattr(images_module, "to_model_mode", _must_not_decode)
    again, stats = _update(images, tmp_path / "cache")
    assert (stats.checked, stats.unchanged, stats.decoded) == (1, 6, 0)
    assert _slots(again) == _slots(first)
    assert again.slots == first.slots == 6
    row = again.index.set_index("path").loc["a/2.png"]
    assert row["mtime_ns"] == (images / "a/2.png").stat().st_mtime_ns  # the new time is kept
    assert row["mtime_ns"] != first.index.set_index("path").loc["a/2.png", "mtime_ns"]
    assert (row["format"], row["width"]) == ("PNG", 12)  # the old row, not "same"
    monkeypatch.undo()
    _assert_pixels_right(read_cache(tmp_path / "cache"), images)
    # Committed with the new time: the next run checks nothing.
    assert _update(images, tmp_path / "cache")[1].checked == 0


def _must_not_decode(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("a file with unchanged bytes was decoded")


def test_changed_file_is_decoded_into_a_new_slot(images, tmp_path, png):
    first, _ = _update(images, tmp_path / "cache")
    old_slot = _slots(first)["a/2.png"]
    png(images / "a/2.png", size=(30, 20), seed=123)
    _touch(images / "a/2.png")  # a coarse file system might keep the modification time
    again, stats = _update(images, tmp_path / "cache")
    assert (stats.checked, stats.decoded, stats.unchanged) == (1, 1, 6)
    assert _slots(again)["a/2.png"] == 6 != old_slot
    assert again.slots == 7
    others = {p: s for p, s in _slots(again).items() if p != "a/2.png"}
    assert others == {p: s for p, s in _slots(first).items() if p != "a/2.png"}
    row = again.index.set_index("path").loc["a/2.png"]
    assert (row["width"], row["height"]) == (30, 20)
    assert row["hash"] != first.index.set_index("path").loc["a/2.png", "hash"]
    _assert_pixels_right(read_cache(tmp_path / "cache"), images)


def test_file_turned_bad_loses_its_slot(images, tmp_path):
    _update(images, tmp_path / "cache")
    (images / "a/0.png").write_bytes(b"")
    _touch(images / "a/0.png")
    again, _ = _update(images, tmp_path / "cache")
    row = again.index.set_index("path").loc["a/0.png"]
    assert (row["reason"], row["slot"]) == ("empty_file", -1)


@pytest.mark.parametrize(("removed", "compacted"), [(2, False), (3, False), (4, True)])
def test_removed_files_compact_the_pool_when_most_slots_are_dead(images, tmp_path, removed,
                                                                 compacted):
    folder = tmp_path / "cache"
    first, _ = _update(images, folder)
    gone = sorted(p for p in _slots(first) if p != "b/bad.png")[:removed]
    for path in gone:
        (images / path).unlink()
    cache, stats = update_cache(read_cache(folder), images, _files(images), SETTINGS)
    assert stats.removed == removed
    assert stats.compacted == compacted
    assert set(cache.index["path"]) == set(_slots(first)) - set(gone)
    kept = cache.index[cache.index["slot"] >= 0]
    if compacted:
        # Live slots renumbered in path order into generation 1; the old pool stays until
        # the new index is committed, so that a crash in between leaves a working cache.
        assert (cache.generation, cache.pool, cache.slots) == (1, "pixels-0001.u8", 6 - removed)
        assert kept["slot"].tolist() == list(range(6 - removed))
        assert kept["path"].tolist() == sorted(kept["path"])
        assert (folder / "pixels-0000.u8").is_file()
        assert read_cache(folder).pool == "pixels-0000.u8"
    else:
        assert (cache.generation, cache.pool, cache.slots) == (0, "pixels-0000.u8", 6)
        assert _slots(cache) == {p: s for p, s in _slots(first).items() if p not in gone}
    write_cache(cache)
    assert sorted(p.name for p in folder.glob("pixels-*.u8")) == [cache.pool]
    assert (folder / cache.pool).stat().st_size == cache.slots * RESOLUTION**2 * 3
    _assert_pixels_right(read_cache(folder), images)


def test_changed_settings_rebuild_everything(images, tmp_path):
    folder = tmp_path / "cache"
    first, _ = _update(images, folder)
    bigger = InspectSettings(10**8, 12, 3)
    cache, stats = _update(images, folder, bigger)
    assert (stats.checked, stats.decoded, stats.unchanged) == (7, 6, 0)
    assert (cache.settings, cache.generation, cache.pool) == (bigger, 1, "pixels-0001.u8")
    assert cache.pixels.shape == (6, 12, 12, 3)
    assert sorted(p.name for p in folder.glob("pixels-*.u8")) == ["pixels-0001.u8"]
    _assert_pixels_right(read_cache(folder), images)
    gray = InspectSettings(10**8, 12, 1)
    cache, stats = _update(images, folder, gray)
    assert (stats.checked, cache.generation, cache.pixels.shape) == (7, 2, (6, 12, 12, 1))
    _assert_pixels_right(read_cache(folder), images)
    assert len(first.index) == len(cache.index)


def test_pool_bytes_past_the_committed_slots_are_cut_off(images, tmp_path, png):
    """A run that crashed after appending pixels, before committing its index."""
    folder = tmp_path / "cache"
    first, _ = _update(images, folder)
    with open(folder / first.pool, "ab") as pool:
        pool.write(b"\x07" * (RESOLUTION**2 * 3 * 2 + 5))  # two slots and a bit of garbage
    assert read_cache(folder).slots == 6  # the committed index still reads
    png(images / "a/new.png", size=(13, 13))
    cache, stats = _update(images, folder)
    assert (stats.decoded, cache.slots, _slots(cache)["a/new.png"]) == (1, 7, 6)
    assert (folder / cache.pool).stat().st_size == 7 * RESOLUTION**2 * 3
    _assert_pixels_right(read_cache(folder), images)


def test_pool_shorter_than_its_index_is_rebuilt(images, tmp_path, caplog):
    folder = tmp_path / "cache"
    first, _ = _update(images, folder)
    with open(folder / first.pool, "r+b") as pool:
        pool.truncate(3 * RESOLUTION**2 * 3)
    with caplog.at_level(logging.WARNING, logger="visrec.core.data.cache"):
        cache = read_cache(folder, SETTINGS)
    assert (len(cache.index), cache.slots, cache.pool) == (0, 0, None)
    assert "pool is short" in caplog.text
    rebuilt, stats = _update(images, folder)
    assert stats.decoded == 6
    _assert_pixels_right(rebuilt, images)


def _index_without_metadata(path: Path) -> None:
    table = pa.table({"path": ["a.png"], "slot": [0]})
    pq.write_table(table.replace_schema_metadata(None), path)


def _index_with_other_metadata(path: Path) -> None:
    pq.write_table(pa.Table.from_pandas(pd.DataFrame({"path": ["a.png"]})), path)


def _index_of_another_format(path: Path) -> None:
    """A future visrec: another format version whose settings have another shape."""
    table = pa.table({"path": ["a.png"], "slot": [0]})
    meta = {b"visrec.image_cache": b'{"format_version": 99, "settings": {"size": 8}, '
                                   b'"pool": "pixels-0000.u8", "slots": 1, "generation": 0}'}
    pq.write_table(table.replace_schema_metadata(meta), path)


@pytest.mark.parametrize("spoil", [
    lambda path: path.write_bytes(b"this is not parquet"),
    lambda path: path.write_bytes(b""),
    lambda path: path.write_bytes(path.read_bytes()[:-30]),
    _index_with_other_metadata,
    _index_without_metadata,
    _index_of_another_format,
], ids=["garbage", "empty", "cut", "other metadata", "no metadata", "other format"])
def test_unreadable_index_opens_an_empty_cache_with_a_warning(images, tmp_path, caplog, spoil):
    folder = tmp_path / "cache"
    _update(images, folder)
    spoil(folder / CACHE_INDEX_FILE)
    with caplog.at_level(logging.WARNING, logger="visrec.core.data.cache"):
        cache = read_cache(folder, SETTINGS)
    assert (len(cache.index), cache.slots, cache.pool, cache.settings) == (0, 0, None, SETTINGS)
    assert "rebuilt" in caplog.text
    _, stats = _update(images, folder)
    assert (stats.checked, stats.decoded) == (7, 6)
    _assert_pixels_right(read_cache(folder), images)


# --- worker processes and pickling ----------------------------------------------------


class _CountedPool(ProcessPoolExecutor):
    """The process pool of visrec.core.data.cache_update, counting how often it is started."""

    started = 0

    def __init__(self, *args: object, **kwargs: object) -> None:
        type(self).started += 1
        super().__init__(*args, **kwargs)


def test_process_pool_gives_the_same_cache_as_one_process(tmp_path, png, monkeypatch):
    monkeypatch.setattr(cache_update_module, "ProcessPoolExecutor", _CountedPool)
    root = tmp_path / "images"
    for i in range(11):
        png(root / f"{'abc'[i % 3]}/{i:02d}.png", size=(9 + i, 10))
    (root / "c" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    serial, serial_stats = _update(root, tmp_path / "one", chunk_files=2)
    assert _CountedPool.started == 0
    pooled, pooled_stats = _update(root, tmp_path / "two", workers=2, chunk_files=2)
    assert _CountedPool.started == 1  # 12 files in chunks of 2: worth the processes
    assert pooled_stats == serial_stats
    assert (pooled_stats.checked, pooled_stats.decoded) == (12, 11)
    pd.testing.assert_frame_equal(pooled.index, serial.index)
    assert (tmp_path / "two" / pooled.pool).read_bytes() == \
        (tmp_path / "one" / serial.pool).read_bytes()
    _assert_pixels_right(read_cache(tmp_path / "two"), root)


def test_cache_pickles_without_its_pixels(images, tmp_path):
    folder = tmp_path / "cache"
    cache, _ = _update(images, folder, InspectSettings(10**8, 48, 3))
    pool_bytes = cache.slots * cache.slot_bytes
    assert pool_bytes == 6 * 48 * 48 * 3
    before = np.array(cache.pixels)  # maps the pool
    data = pickle.dumps(cache)
    assert len(data) < pool_bytes / 4
    copy = pickle.loads(data)
    assert copy._pixels is None
    np.testing.assert_array_equal(copy.pixels, before)  # mapped anew in the new process
    assert cache._pixels is not None  # the original keeps its map


def test_a_file_that_kills_its_worker_is_quarantined_and_the_rest_checked(
        tmp_path, png, monkeypatch, caplog):
    root = tmp_path / "many"
    for i in range(40):
        png(root / f"{i:03d}.png", size=(8, 8))
    png(root / "017 crash.png", size=(8, 8))
    monkeypatch.setattr("visrec.core.data.cache_update.inspect_files", inspect_or_die)
    cache, stats = _update(root, tmp_path / "cache", workers=2, chunk_files=4)
    rows = cache.index.set_index("path")
    assert rows.loc["017 crash.png", "reason"] == "unreadable"
    assert "decoder crashed" in rows.loc["017 crash.png", "detail"]
    assert (rows.drop(index="017 crash.png")["reason"] == "").all()
    assert (stats.checked, stats.decoded) == (41, 40)
    assert "a worker process died" in caplog.text
    _assert_pixels_right(cache, root)


@pytest.mark.faults
def test_another_root_with_the_same_paths_sizes_and_times_is_read_anew(images, tmp_path, png):
    """A copy that keeps times (cp -p, rsync -a) with one image changed in place: the cache
    of the first folder must not lend it its pixels."""
    cache, _ = _update(images, tmp_path / "cache")
    assert cache.root == str(images)
    other = tmp_path / "other"
    shutil.copytree(images, other)  # copies modification times too
    changed = other / "a" / "0.png"
    info = changed.stat()
    png(tmp_path / "spare.png", size=(10, 9), seed=4242)  # the same size in bytes, or close
    data = (tmp_path / "spare.png").read_bytes()
    changed.write_bytes(data)
    os.utime(changed, ns=(info.st_atime_ns, info.st_mtime_ns))
    files = _files(other)
    files.loc[files["path"] == "a/0.png", "bytes"] = info.st_size  # as if the sizes matched
    moved, stats = update_cache(read_cache(tmp_path / "cache"), other, files, SETTINGS)
    write_cache(moved)
    assert moved.root == str(other) and read_cache(tmp_path / "cache").root == str(other)
    assert stats.unchanged == 0 and stats.decoded == 1  # hashed again; one file decoded
    _assert_pixels_right(moved, other)


@pytest.mark.faults
def test_a_manifest_is_refused_by_a_cache_it_was_not_written_against(images, tmp_path):
    cache, _ = _update(images, tmp_path / "cache")
    manifest = stamp_manifest(pd.DataFrame({"path": ["a/0.png"]}), cache)
    stored = tmp_path / "manifest.parquet"
    manifest.to_parquet(stored)
    manifest = pd.read_parquet(stored)  # the stamp rides in the parquet file
    check_manifest_cache(manifest, read_cache(tmp_path / "cache"))
    check_manifest_cache(manifest[manifest["path"] == "a/0.png"], cache)  # rows keep it
    for path in sorted(images.rglob("*.png"))[:4]:  # most files go: the pool is compacted
        path.unlink()
    compacted, stats = _update(images, tmp_path / "cache")
    assert stats.compacted and compacted.generation == cache.generation + 1
    with pytest.raises(CacheMismatch, match=(
            r"the manifest does not match the packed cache in .*cache \(generation 1, "
            r"[0-9a-f]{12}\): it was written against generation 0 \([0-9a-f]{12}\); .* Run "
            r"ingestion again \(kedro run --pipelines=ingestion\)")):
        check_manifest_cache(manifest, read_cache(tmp_path / "cache"))
    with pytest.raises(CacheMismatch, match="an older visrec"):
        check_manifest_cache(pd.DataFrame({"path": ["a/1.png"]}), compacted)


class _DiskFills:
    """A pool file whose disk fills after ``room`` images."""

    def __init__(self, stream, room: int) -> None:
        self.stream, self.room = stream, room

    def write(self, data: bytes) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= 1
        return self.stream.write(data)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


@pytest.mark.faults
def test_a_full_disk_keeps_the_files_checked_by_the_last_commit(tmp_path, png, monkeypatch):
    root = tmp_path / "images"
    for i in range(24):
        png(root / f"{'ab'[i % 2]}/{i:02d}.png", size=(10, 9))
    real_open = open
    monkeypatch.setattr(cache_update_module, "open",
                        lambda *args: _DiskFills(real_open(*args), room=10), raising=False)
    with pytest.raises(CacheDiskFull, match=(
            r"the disk is full writing the packed cache in .*; the 8 files checked by the "
            r"last commit are kept and the next run goes on from there\. Free some space, or "
            r"lower ingestion.cache.resolution, or set ingestion.cache.enabled: false")):
        update_cache(read_cache(tmp_path / "cache"), root, _files(root), SETTINGS,
                     chunk_files=4, commit_seconds=0.0)
    kept = read_cache(tmp_path / "cache")
    assert len(kept.index) == 8 and kept.slots == 8  # two chunks of 4 were committed
    _assert_pixels_right(kept, root)
    monkeypatch.undo()
    cache, stats = _update(root, tmp_path / "cache")
    assert (stats.unchanged, stats.decoded) == (8, 16)  # the next run goes on from there
    _assert_pixels_right(cache, root)
    assert len(cache.index) == 24
