"""Tests of visrec.core.data.datasets: datasets over the manifest, from the packed cache or
the files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from visrec.core.data import (
    CachedImageDataset,
    ImageCache,
    ManifestImageDataset,
    manifest_dataset,
    read_cache,
    update_cache,
    write_cache,
)
from visrec.core.images import InspectSettings, fit_square, load_image

RESOLUTION = 8


@pytest.fixture
def cached(tmp_path, png) -> tuple[Path, ImageCache, pd.DataFrame]:
    """Four noise PNGs, their committed packed cache, and manifest-like rows."""
    root = tmp_path / "images"
    paths = [f"{label}/{i}.png" for label in ("a", "b") for i in range(2)]
    for i, path in enumerate(paths):
        png(root / path, size=(10 + i, 9))
    files = pd.DataFrame([(p, (root / p).stat().st_size, (root / p).stat().st_mtime_ns)
                          for p in paths], columns=["path", "bytes", "mtime_ns"])
    cache, _ = update_cache(read_cache(tmp_path / "cache"), root, files,
                            InspectSettings(10**8, RESOLUTION, 3))
    write_cache(cache)
    slots = dict(zip(cache.index["path"], cache.index["slot"], strict=True))
    rows = pd.DataFrame({"path": paths, "class_index": [0, 0, 1, 1],
                         "cache_index": [slots[p] for p in paths]})
    return root, read_cache(tmp_path / "cache"), rows


def test_cached_dataset_returns_the_pool_slot_as_a_uint8_image(cached):
    _, cache, _ = cached
    slots = [3, 0, 2]
    dataset = CachedImageDataset(cache, slots, [1, 0, 1], transform=None)
    assert len(dataset) == 3
    for index, (slot, label) in enumerate(zip(slots, [1, 0, 1], strict=True)):
        image, got = dataset[index]
        assert isinstance(image, tv_tensors.Image)
        assert (image.dtype, tuple(image.shape)) == (torch.uint8, (3, RESOLUTION, RESOLUTION))
        np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), cache.pixels[slot])
        assert got == label
        assert isinstance(got, int)
    image, _ = dataset[0]
    image[:] = 0  # a copy: writing to it leaves the read-only pool alone
    assert cache.pixels[3].any()


def test_cached_dataset_applies_its_transform(cached):
    _, cache, _ = cached
    dataset = CachedImageDataset(cache, [1], [0], transform=lambda t: t.float() / 255)
    image, _ = dataset[0]
    assert image.dtype == torch.float32
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy(), cache.pixels[1] / 255,
                               rtol=1e-6)


def test_manifest_dataset_reads_the_cache_when_it_holds_every_row(cached):
    root, cache, rows = cached
    dataset = manifest_dataset(rows, cache, root, transform=None)
    assert isinstance(dataset, CachedImageDataset)
    for index, row in enumerate(rows.itertuples()):
        image, label = dataset[index]
        expected = fit_square(load_image(root / row.path), RESOLUTION)
        np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), expected)
        assert label == row.class_index


def test_manifest_dataset_reads_files_when_a_row_is_not_cached(cached, caplog):
    root, cache, rows = cached
    rows = rows.assign(cache_index=[0, -1, 2, 3])
    with caplog.at_level(logging.WARNING, logger="visrec.core.data.datasets"):
        dataset = manifest_dataset(rows, cache, root, transform=None)
    assert isinstance(dataset, ManifestImageDataset)
    assert "lacks 1 of 4 images" in caplog.text
    image, label = dataset[1]
    assert isinstance(image, Image.Image)
    assert (image.size, label) == ((11, 9), 0)  # the file itself, at its own size
    np.testing.assert_array_equal(np.asarray(image), np.asarray(load_image(root / "a/1.png")))


@pytest.mark.parametrize("cache_kind", ["none", "disabled"])
def test_manifest_dataset_reads_files_without_a_cache(cached, tmp_path, cache_kind):
    root, _, rows = cached
    cache = None if cache_kind == "none" else ImageCache(tmp_path / "x",
                                                         InspectSettings(10**8, 0, 3))
    dataset = manifest_dataset(rows, cache, root, transform=None, channels=1)
    assert isinstance(dataset, ManifestImageDataset)
    assert dataset.channels == 1
    assert dataset[2][0].mode == "L"


@pytest.mark.parametrize(("channels", "mode", "shape"), [(1, "L", (1, 9, 12)),
                                                         (3, "RGB", (3, 9, 12))])
def test_file_dataset_decodes_in_the_requested_channels(tmp_path, channels, mode, shape):
    Image.new("RGB", (12, 9), (255, 0, 0)).save(tmp_path / "red.png")
    Image.new("RGBA", (12, 9), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    plain = ManifestImageDataset(tmp_path, ["red.png", "clear.png"], [4, 2], None, channels)
    image, label = plain[0]
    assert (image.mode, image.size, label) == (mode, (12, 9), 4)
    expected_red = [76] if channels == 1 else [255, 0, 0]  # luminance of pure red is 76
    assert np.asarray(image).reshape(9, 12, -1)[0, 0].tolist() == expected_red
    clear, _ = plain[1]
    assert np.asarray(clear).reshape(9, 12, -1)[0, 0].tolist() == [255] * channels  # white
    tensors = ManifestImageDataset(tmp_path, ["red.png"], [4],
                                   lambda im: torch.from_numpy(np.asarray(im).copy()).reshape(
                                       9, 12, -1).permute(2, 0, 1), channels)
    assert tuple(tensors[0][0].shape) == shape
