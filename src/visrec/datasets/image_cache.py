"""Kedro dataset for ingestion's packed image cache (see :mod:`visrec.core.data.cache`)."""

from __future__ import annotations

from kedro.io import DatasetError

from visrec.core.data import CACHE_INDEX_FILE, ImageCache, read_cache, write_cache
from visrec.datasets.folder import FolderDataset


class ImageCacheDataset(FolderDataset[ImageCache, ImageCache]):
    """A packed image cache folder: an index table and a memory-mapped pixel pool.

    Loading opens the committed cache (an empty one when the folder is new or unreadable);
    the pool is memory-mapped on first access, never read whole. Saving commits a cache
    that was updated in this same folder: the index is written to a temporary file and
    renamed into place, so a crash keeps the previous cache whole.

    Ingestion reads the cache it last wrote through a second catalog entry on the same
    folder (``image_cache_state``), because a Kedro node cannot take its own output.

    Example catalog entry::

        image_cache:
          type: visrec.datasets.ImageCacheDataset
          path: data/04_feature/image_cache
    """

    def load(self) -> ImageCache:
        """Open the committed cache, or an empty one."""
        return read_cache(self._path)

    def save(self, data: ImageCache) -> None:
        """Commit ``data``, whose pool must live in this dataset's folder.

        Raises:
            DatasetError: If ``data`` was built in another folder.
        """
        if data.folder.resolve() != self._path.resolve():
            raise DatasetError(f"image cache built in {data.folder} cannot be saved to "
                               f"{self._path}: update the cache loaded from this folder")
        write_cache(data)

    def _exists(self) -> bool:
        return (self._path / CACHE_INDEX_FILE).is_file()
