"""visrec.datasets.ImageCacheDataset: the packed cache as a Kedro catalog entry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kedro.io import AbstractDataset, DatasetError

from visrec.core.data import update_cache
from visrec.core.images import InspectSettings, fit_square, load_image

SETTINGS = InspectSettings(max_pixels=10**8, resolution=12, channels=3)


def _dataset(path) -> AbstractDataset:
    return AbstractDataset.from_config(
        "image_cache", {"type": "visrec.datasets.ImageCacheDataset", "path": str(path)})


def _files(root) -> pd.DataFrame:
    paths = sorted(p for p in root.rglob("*.png"))
    return pd.DataFrame({"path": [p.relative_to(root).as_posix() for p in paths],
                         "bytes": [p.stat().st_size for p in paths],
                         "mtime_ns": [p.stat().st_mtime_ns for p in paths]})


def test_missing_folder_loads_an_empty_cache(tmp_path):
    dataset = _dataset(tmp_path / "cache")
    cache = dataset.load()
    assert cache.index.empty and not cache.enabled
    assert not dataset.exists()


def test_save_commits_and_load_maps_the_pixels(tmp_path, png):
    for i in range(3):
        png(tmp_path / "images" / f"{i}.png", size=(20 + i, 15))
    dataset = _dataset(tmp_path / "cache")
    cache, _ = update_cache(dataset.load(), tmp_path / "images", _files(tmp_path / "images"),
                            SETTINGS)
    dataset.save(cache)
    assert dataset.exists()
    loaded = dataset.load()
    pd.testing.assert_frame_equal(loaded.index, cache.index)
    assert isinstance(loaded.pixels, np.memmap)
    for path, slot in zip(loaded.index["path"], loaded.index["slot"], strict=True):
        np.testing.assert_array_equal(
            loaded.pixels[slot], fit_square(load_image(tmp_path / "images" / path), 12))
    assert dataset._describe() == {"path": str(tmp_path / "cache")}


def test_a_cache_from_another_folder_is_refused(tmp_path, png):
    png(tmp_path / "images" / "a.png")
    elsewhere = _dataset(tmp_path / "elsewhere").load()
    cache, _ = update_cache(elsewhere, tmp_path / "images", _files(tmp_path / "images"),
                            SETTINGS)
    with pytest.raises(DatasetError, match="cannot be saved to"):
        _dataset(tmp_path / "cache").save(cache)
