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

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from visrec.core.images import InspectSettings

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the pixels or the index change meaning: caches are rebuilt
INDEX_FILE = "index.parquet"
METADATA_KEY = b"visrec.image_cache"
INDEX_COLUMNS = {"path": "str", "bytes": "int64", "mtime_ns": "int64", "hash": "str",
                 "format": "str", "mode": "str", "width": "int64", "height": "int64",
                 "reason": "str", "detail": "str", "slot": "int64"}



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
        root: The folder the index's paths are relative to (``""``: not yet known): a
            file at the same path in another folder is another file.
    """

    folder: Path
    settings: InspectSettings
    index: pd.DataFrame = field(default_factory=empty_index)
    pool: str | None = None
    slots: int = 0
    generation: int = 0
    root: str = ""
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

    def digest(self) -> str:
        """What the cache holds, as 32 hex digits: its settings, pool and the path, content
        hash and slot of every file. A manifest records it (:func:`stamp_manifest`), so
        that one written against another cache is refused, not read wrong."""
        digest = hashlib.blake2b(digest_size=16)
        described = {key: value for key, value in self.metadata().items() if key != "root"}
        digest.update(json.dumps(described, sort_keys=True).encode())
        for column in ("path", "hash"):
            digest.update("\n".join(self.index[column].astype(str)).encode())
        digest.update(self.index["slot"].to_numpy(np.int64).tobytes())
        return digest.hexdigest()

    def metadata(self) -> dict:
        """The settings and pool description stored in the index file."""
        return {"format_version": FORMAT_VERSION, "settings": self.settings._asdict(),
                "pool": self.pool, "slots": self.slots, "generation": self.generation,
                "root": self.root}


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
                           meta["slots"], meta["generation"], meta.get("root", ""))
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


def pool_name(generation: int) -> str:
    """The file name of the pool of ``generation``."""
    return f"pixels-{generation:04d}.u8"


MANIFEST_ATTRS = "image_cache"  # the manifest's pandas attrs (kept in its parquet) key


class CacheMismatch(ValueError):
    """A manifest was written against another packed cache than the one on disk."""


def stamp_manifest(manifest: pd.DataFrame, cache: ImageCache) -> pd.DataFrame:
    """``manifest`` carrying the generation and digest of the cache its ``cache_index``
    points into (in ``attrs``, which pandas keeps in the parquet file)."""
    manifest.attrs[MANIFEST_ATTRS] = {"generation": cache.generation, "digest": cache.digest()}
    return manifest


def check_manifest_cache(manifest: pd.DataFrame, cache: ImageCache) -> None:
    """Raise unless ``manifest`` was written against ``cache`` as it is now.

    Raises:
        CacheMismatch: Saying to run ingestion again.
    """
    stamp = manifest.attrs.get(MANIFEST_ATTRS)
    digest = cache.digest()  # hashes the whole index: once
    if stamp == {"generation": cache.generation, "digest": digest}:
        return
    told = ("it does not say which cache it was written against (an older visrec)"
            if stamp is None else
            f"it was written against generation {stamp.get('generation')} "
            f"({str(stamp.get('digest'))[:12]})")
    raise CacheMismatch(
        f"the manifest does not match the packed cache in {cache.folder} (generation "
        f"{cache.generation}, {digest[:12]}): {told}; an ingestion stopped between "
        "writing the cache and the manifest, or one of them was restored alone. Run "
        "ingestion again (kedro run --pipelines=ingestion): unchanged files are not "
        "decoded again")
